"""Exchanges get a scope (where their votes and corrections may be retrieved).

Exchanges from before scopes get their channel as scope: the narrowest, so safe. A SQLite file
written between scopes and versioned migrations already has the column, and keeps it as it is.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def channel_scope(platform: str, conversation: str) -> str:
    """`platform:channel` of a `platform:channel:thread` conversation (as the SQLite-only SQL of the
    store's first scope migration computed it; in Python here so that one code serves both databases)."""
    rest = conversation[len(platform) + 1 :]
    return conversation[: len(platform) + rest.find(":") + 1]


def upgrade() -> None:
    bind = op.get_bind()
    if "scope" in {column["name"] for column in sa.inspect(bind).get_columns("exchanges")}:
        return
    op.add_column("exchanges", sa.Column("scope", sa.Text(), nullable=False, server_default=""))
    exchanges = sa.table("exchanges", *(sa.column(name) for name in ("id", "platform", "conversation", "scope")))
    rows = bind.execute(sa.select(exchanges.c.id, exchanges.c.platform, exchanges.c.conversation)).all()
    if rows:
        update = exchanges.update().where(exchanges.c.id == sa.bindparam("row_id"))
        scopes = [{"row_id": id_, "row_scope": channel_scope(platform, key)} for id_, platform, key in rows]
        bind.execute(update.values(scope=sa.bindparam("row_scope")), scopes)


def downgrade() -> None:
    op.drop_column("exchanges", "scope")
