"""What the feedback store keeps: its tables (one definition for SQLite and PostgreSQL), and the
records it hands back. The tables here are the schema's current shape; bot/stores/migrations/ gets every
database there, and a test checks that the two agree."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    false,
)

from bot.types import ReplyStats

# Event ids are kept this long for dedup. Slack retries an unacknowledged event three times within
# about five minutes (at once, after 1 min, after 5 min) and Discord replays only what a resumed
# gateway session missed, minutes at most: a day is far past both, and bounds the table.
SEEN_EVENTS_KEEP_S = 24 * 3600.0

metadata = MetaData()
# Times are seconds since the epoch (time.time()): a double on both engines, so they compare alike.
exchanges = Table(
    "exchanges",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", Double, nullable=False),
    Column("platform", Text, nullable=False),
    Column("conversation", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("user_text", Text, nullable=False),
    Column("reply", Text, nullable=False),
    Column("prompt_json", Text, nullable=False),
    Column("example_ids_json", Text, nullable=False),
    Column("lora_version", Text),
    Column("latency_s", Double),
    Column("first_token_s", Double),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("scope", Text, nullable=False, server_default=""),
    Column("retriever_version", Text),  # the LoRA version whose query adapter retrieved; None: the embedder alone
    Column("stopped", Boolean, nullable=False, server_default=false()),  # the asker stopped it part-written
    Index("exchanges_by_conversation", "conversation", "created_at"),
)
message_links = Table(
    "message_links",
    metadata,
    Column("platform", Text, primary_key=True),
    Column("message_ref", Text, primary_key=True),
    Column("exchange_id", Text, ForeignKey("exchanges.id"), nullable=False),
)
votes = Table(
    "votes",
    metadata,
    Column("exchange_id", Text, ForeignKey("exchanges.id"), primary_key=True),
    Column("platform", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("value", Integer, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("reason", Text),  # why a 👎 (VOTE_REASONS: "wrong", "outdated", "unhelpful", "unsafe"); None: not said
    CheckConstraint("value IN (-1, 1)"),
)
corrections = Table(
    "corrections",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", Double, nullable=False),
    Column("exchange_id", Text),
    Column("platform", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("reviewed_by", Text),
    Column("reviewed_at", Double),
    CheckConstraint("status IN ('pending', 'accepted', 'rejected')"),
    Index("corrections_by_user", "platform", "user_id", "status"),
)
seen_events = Table(
    "seen_events",
    metadata,
    Column("platform", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("seen_at", Double, nullable=False),
    Index("seen_events_by_time", "seen_at"),
)
# Feedback whose example is not yet in the example store (written in the feedback's own
# transaction, cleared once the example store has it): a crash in between is repaired at start.
example_sync = Table(
    "example_sync",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("ref", Text, primary_key=True),
    Column("queued_at", Double, nullable=False),
    CheckConstraint("kind IN ('exchange', 'correction')"),
)
conversation_resets = Table(
    "conversation_resets",
    metadata,
    Column("conversation", Text, primary_key=True),
    Column("reset_at", Double, nullable=False),
)


@dataclass(frozen=True)
class Exchange:
    id: str
    created_at: float
    platform: str
    conversation: str
    user_id: str
    user_text: str
    reply: str
    prompt: list[dict[str, str]]
    example_ids: tuple[str, ...]
    lora_version: str | None
    stats: ReplyStats | None  # None: a row without measurements (the columns allow it; early bots wrote such rows)
    scope: str = ""
    retriever_version: str | None = None
    stopped: bool = False


@dataclass(frozen=True)
class Correction:
    id: str
    created_at: float
    exchange_id: str | None
    platform: str
    user_id: str
    question: str
    answer: str
    status: str
    reviewed_by: str | None


def exchange_from_row(row: Mapping[str, Any]) -> Exchange:
    return Exchange(
        id=row["id"],
        created_at=row["created_at"],
        platform=row["platform"],
        conversation=row["conversation"],
        user_id=row["user_id"],
        user_text=row["user_text"],
        reply=row["reply"],
        prompt=json.loads(row["prompt_json"]),
        example_ids=tuple(json.loads(row["example_ids_json"])),
        lora_version=row["lora_version"],
        stats=stats_from_row(row),
        scope=row["scope"],
        retriever_version=row["retriever_version"],
        stopped=bool(row["stopped"]),
    )


def stats_from_row(row: Mapping[str, Any]) -> ReplyStats | None:
    """The exchange's measurements, from the columns named as ReplyStats' fields."""
    if row["latency_s"] is None:
        return None
    return ReplyStats(**{field.name: row[field.name] for field in fields(ReplyStats)})


def correction_from_row(row: Mapping[str, Any]) -> Correction:
    return Correction(
        id=row["id"],
        created_at=row["created_at"],
        exchange_id=row["exchange_id"],
        platform=row["platform"],
        user_id=row["user_id"],
        question=row["question"],
        answer=row["answer"],
        status=row["status"],
        reviewed_by=row["reviewed_by"],
    )
