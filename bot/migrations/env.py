"""Alembic runs this for every upgrade: it migrates on the connection that bot.feedback_db.migrate
opened (inside that connection's transaction and, on PostgreSQL, its advisory lock)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bot.feedback_records import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():  # the caller's transaction: Alembic nests in it, commits nothing
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the feedback store's migrations with bot.feedback_db.migrate (they need its connection)")
run_migrations(connection)
