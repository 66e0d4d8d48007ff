"""Alembic runs this for every upgrade: it migrates on the connection that bot.stores.database.migrate
opened (inside that connection's transaction and, on PostgreSQL, its advisory lock)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bot.stores.records import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():  # the caller's transaction: Alembic nests in it, commits nothing
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run these migrations with bot.stores.database.migrate (it passes the connection)")
run_migrations(connection)
