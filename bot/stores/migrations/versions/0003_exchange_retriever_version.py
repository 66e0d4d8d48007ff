"""Exchanges record which LoRA version's query adapter retrieved their examples (issue 31).

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("exchanges", sa.Column("retriever_version", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("exchanges", "retriever_version")
