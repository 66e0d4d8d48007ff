"""The schema as the SQLite store created it before versioned migrations (exchanges without scope).

IF NOT EXISTS throughout: a file from before Alembic already has these tables, and keeps its rows.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    text, double = sa.Text(), sa.Double()
    op.create_table(
        "exchanges",
        sa.Column("id", text, primary_key=True),
        sa.Column("created_at", double, nullable=False),
        sa.Column("platform", text, nullable=False),
        sa.Column("conversation", text, nullable=False),
        sa.Column("user_id", text, nullable=False),
        sa.Column("user_text", text, nullable=False),
        sa.Column("reply", text, nullable=False),
        sa.Column("prompt_json", text, nullable=False),
        sa.Column("example_ids_json", text, nullable=False),
        sa.Column("lora_version", text),
        sa.Column("latency_s", double),
        sa.Column("first_token_s", double),
        sa.Column("prompt_tokens", sa.Integer()),
        sa.Column("completion_tokens", sa.Integer()),
        if_not_exists=True,
    )
    op.create_index("exchanges_by_conversation", "exchanges", ["conversation", "created_at"], if_not_exists=True)
    op.create_table(
        "message_links",
        sa.Column("platform", text, primary_key=True),
        sa.Column("message_ref", text, primary_key=True),
        sa.Column("exchange_id", text, sa.ForeignKey("exchanges.id"), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "votes",
        sa.Column("exchange_id", text, sa.ForeignKey("exchanges.id"), primary_key=True),
        sa.Column("platform", text, primary_key=True),
        sa.Column("user_id", text, primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("updated_at", double, nullable=False),
        sa.CheckConstraint("value IN (-1, 1)"),
        if_not_exists=True,
    )
    op.create_table(
        "corrections",
        sa.Column("id", text, primary_key=True),
        sa.Column("created_at", double, nullable=False),
        sa.Column("exchange_id", text),
        sa.Column("platform", text, nullable=False),
        sa.Column("user_id", text, nullable=False),
        sa.Column("question", text, nullable=False),
        sa.Column("answer", text, nullable=False),
        sa.Column("status", text, nullable=False),
        sa.Column("reviewed_by", text),
        sa.Column("reviewed_at", double),
        sa.CheckConstraint("status IN ('pending', 'accepted', 'rejected')"),
        if_not_exists=True,
    )
    op.create_index("corrections_by_user", "corrections", ["platform", "user_id", "status"], if_not_exists=True)
    op.create_table(
        "seen_events",
        sa.Column("platform", text, primary_key=True),
        sa.Column("event_id", text, primary_key=True),
        sa.Column("seen_at", double, nullable=False),
        if_not_exists=True,
    )
    op.create_index("seen_events_by_time", "seen_events", ["seen_at"], if_not_exists=True)
    op.create_table(
        "example_sync",
        sa.Column("kind", text, primary_key=True),
        sa.Column("ref", text, primary_key=True),
        sa.Column("queued_at", double, nullable=False),
        sa.CheckConstraint("kind IN ('exchange', 'correction')"),
        if_not_exists=True,
    )
    op.create_table(
        "conversation_resets",
        sa.Column("conversation", text, primary_key=True),
        sa.Column("reset_at", double, nullable=False),
        if_not_exists=True,
    )


def downgrade() -> None:
    for table in ("conversation_resets", "example_sync", "seen_events", "corrections", "votes", "message_links"):
        op.drop_table(table)
    op.drop_table("exchanges")
