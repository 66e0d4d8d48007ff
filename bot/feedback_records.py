"""What the feedback store keeps: its schema, and the records it hands back."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

# Event ids are kept this long for dedup. Slack retries an unacknowledged event three times within
# about five minutes (at once, after 1 min, after 5 min) and Discord replays only what a resumed
# gateway session missed, minutes at most: a day is far past both, and bounds the table.
SEEN_EVENTS_KEEP_S = 24 * 3600.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    platform TEXT NOT NULL,
    conversation TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_text TEXT NOT NULL,
    reply TEXT NOT NULL,
    prompt_json TEXT NOT NULL,
    example_ids_json TEXT NOT NULL,
    lora_version TEXT,
    latency_s REAL,
    first_token_s REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    scope TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS exchanges_by_conversation ON exchanges (conversation, created_at);
CREATE TABLE IF NOT EXISTS message_links (
    platform TEXT NOT NULL,
    message_ref TEXT NOT NULL,
    exchange_id TEXT NOT NULL REFERENCES exchanges (id),
    PRIMARY KEY (platform, message_ref)
);
CREATE TABLE IF NOT EXISTS votes (
    exchange_id TEXT NOT NULL REFERENCES exchanges (id),
    platform TEXT NOT NULL,
    user_id TEXT NOT NULL,
    value INTEGER NOT NULL CHECK (value IN (-1, 1)),
    updated_at REAL NOT NULL,
    PRIMARY KEY (exchange_id, platform, user_id)
);
CREATE TABLE IF NOT EXISTS corrections (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    exchange_id TEXT,
    platform TEXT NOT NULL,
    user_id TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
    reviewed_by TEXT,
    reviewed_at REAL
);
CREATE INDEX IF NOT EXISTS corrections_by_user ON corrections (platform, user_id, status);
CREATE TABLE IF NOT EXISTS seen_events (
    platform TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (platform, event_id)
);
CREATE INDEX IF NOT EXISTS seen_events_by_time ON seen_events (seen_at);
-- Feedback whose example is not yet in the example store (written in the feedback's own
-- transaction, cleared once the example store has it): a crash in between is repaired at start.
CREATE TABLE IF NOT EXISTS example_sync (
    kind TEXT NOT NULL CHECK (kind IN ('exchange', 'correction')),
    ref TEXT NOT NULL,
    queued_at REAL NOT NULL,
    PRIMARY KEY (kind, ref)
);
CREATE TABLE IF NOT EXISTS conversation_resets (
    conversation TEXT PRIMARY KEY,
    reset_at REAL NOT NULL
);
"""


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
    latency_s: float | None
    first_token_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    scope: str = ""


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


def exchange_from_row(row: sqlite3.Row) -> Exchange:
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
        latency_s=row["latency_s"],
        first_token_s=row["first_token_s"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        scope=row["scope"],
    )


def correction_from_row(row: sqlite3.Row) -> Correction:
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
