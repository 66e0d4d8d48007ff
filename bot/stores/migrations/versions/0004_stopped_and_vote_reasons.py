"""Exchanges record whether the asker stopped the reply; votes record why a 👎 was given (issue 33).

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("exchanges", sa.Column("stopped", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("votes", sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("votes", "reason")
    op.drop_column("exchanges", "stopped")
