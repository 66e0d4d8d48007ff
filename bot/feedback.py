"""Durable store of exchanges, votes, corrections and conversation state (SQLite in WAL mode).

Every write commits before the method returns, so when the bot says it has something, it has it.
Conversation history is read back from the exchanges themselves: one source of truth.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.feedback_records import (
    SCHEMA,
    SEEN_EVENTS_KEEP_S,
    Correction,
    Exchange,
    correction_from_row,
    exchange_from_row,
)
from bot.prompt import Turn
from bot.types import ConversationKey


class FeedbackStore:
    """One SQLite file; safe to share across threads (one connection, one lock)."""

    prune_interval_s = 60.0  # how often claim_event may prune old event ids (a cheap indexed delete)

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._last_prune = float("-inf")  # time.monotonic() of claim_event's last prune
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a vote acknowledged survives power loss
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a file written by an older version up to this schema."""
        with self._tx() as db:
            columns = {row["name"] for row in db.execute("PRAGMA table_info(exchanges)")}
            if "scope" not in columns:
                # Exchanges from before scopes get their channel as scope: the narrowest, so safe.
                db.execute("ALTER TABLE exchanges ADD COLUMN scope TEXT NOT NULL DEFAULT ''")
                db.execute(
                    "UPDATE exchanges SET scope = substr(conversation, 1, "
                    "length(platform) + instr(substr(conversation, length(platform) + 2), ':'))"
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # exchanges ---------------------------------------------------------------------------------

    def add_exchange(
        self,
        conversation: ConversationKey,
        user_id: str,
        user_text: str,
        reply: str,
        prompt: list[dict[str, str]],
        example_ids: tuple[str, ...],
        lora_version: str | None,
        latency_s: float,
        first_token_s: float | None,
        prompt_tokens: int,
        completion_tokens: int,
        scope: str,
    ) -> str:
        exchange_id = uuid.uuid4().hex
        with self._tx() as db:
            db.execute(
                "INSERT INTO exchanges (id, created_at, platform, conversation, user_id, user_text, reply, "
                "prompt_json, example_ids_json, lora_version, latency_s, first_token_s, prompt_tokens, "
                "completion_tokens, scope) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    exchange_id,
                    time.time(),
                    conversation.platform,
                    conversation.as_str(),
                    user_id,
                    user_text,
                    reply,
                    json.dumps(prompt, ensure_ascii=False),
                    json.dumps(list(example_ids)),
                    lora_version,
                    latency_s,
                    first_token_s,
                    prompt_tokens,
                    completion_tokens,
                    scope,
                ),
            )
        return exchange_id

    def exchange(self, exchange_id: str) -> Exchange | None:
        rows = self._query("SELECT * FROM exchanges WHERE id = ?", (exchange_id,))
        return exchange_from_row(rows[0]) if rows else None

    def exchanges(self, limit: int | None = None) -> list[Exchange]:
        sql = "SELECT * FROM exchanges ORDER BY created_at"
        rows = self._query(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        return [exchange_from_row(row) for row in rows]

    def count_exchanges(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM exchanges")[0][0])

    def history(self, conversation: ConversationKey, turns: int) -> list[Turn]:
        """The last `turns` exchanges of a conversation since its last reset, oldest first."""
        if turns <= 0:
            return []
        rows = self._query(
            """SELECT user_text, reply FROM exchanges
               WHERE conversation = ? AND created_at > COALESCE(
                   (SELECT reset_at FROM conversation_resets WHERE conversation = ?), 0)
               ORDER BY created_at DESC LIMIT ?""",
            (conversation.as_str(), conversation.as_str(), turns),
        )
        return [Turn(row["user_text"], row["reply"]) for row in reversed(rows)]

    def has_history(self, conversation: ConversationKey) -> bool:
        return bool(self._query("SELECT 1 FROM exchanges WHERE conversation = ? LIMIT 1", (conversation.as_str(),)))

    def latest_exchange(self, conversation: ConversationKey) -> str | None:
        """The id of the bot's latest reply in a conversation (a reset forgets history, not replies)."""
        rows = self._query(
            "SELECT id FROM exchanges WHERE conversation = ? ORDER BY created_at DESC LIMIT 1", (conversation.as_str(),)
        )
        return rows[0][0] if rows else None

    def reset(self, conversation: ConversationKey) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO conversation_resets VALUES (?, ?) "
                "ON CONFLICT (conversation) DO UPDATE SET reset_at = excluded.reset_at",
                (conversation.as_str(), time.time()),
            )

    # platform message links and dedup ----------------------------------------------------------

    def link_message(self, exchange_id: str, platform: str, message_ref: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO message_links VALUES (?, ?, ?)", (platform, message_ref, exchange_id))

    def exchange_for_message(self, platform: str, message_ref: str) -> str | None:
        rows = self._query(
            "SELECT exchange_id FROM message_links WHERE platform = ? AND message_ref = ?", (platform, message_ref)
        )
        return rows[0][0] if rows else None

    def claim_event(self, platform: str, event_id: str) -> bool:
        """True the first time (platform, event_id) is seen; False for every repeat within a day."""
        now = time.time()
        with self._tx() as db:
            if time.monotonic() - self._last_prune >= self.prune_interval_s:
                self._last_prune = time.monotonic()
                db.execute("DELETE FROM seen_events WHERE seen_at < ?", (now - SEEN_EVENTS_KEEP_S,))
            cursor = db.execute("INSERT OR IGNORE INTO seen_events VALUES (?, ?, ?)", (platform, event_id, now))
            return cursor.rowcount == 1

    # votes -------------------------------------------------------------------------------------

    def set_vote(self, exchange_id: str, platform: str, user_id: str, value: int) -> int:
        """Record a vote (+1/-1; 0 retracts). The last vote of a user wins. Returns the net score."""
        if value not in (-1, 0, 1):
            raise ValueError(f"a vote is -1, 0 or +1, not {value!r}")
        with self._tx() as db:
            if value == 0:
                db.execute(
                    "DELETE FROM votes WHERE exchange_id = ? AND platform = ? AND user_id = ?",
                    (exchange_id, platform, user_id),
                )
            else:
                db.execute(
                    "INSERT INTO votes VALUES (?, ?, ?, ?, ?) ON CONFLICT (exchange_id, platform, user_id) "
                    "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    (exchange_id, platform, user_id, value, time.time()),
                )
            _queue_sync(db, "exchange", exchange_id)
            row = db.execute(
                "SELECT COALESCE(SUM(value), 0) FROM votes WHERE exchange_id = ?", (exchange_id,)
            ).fetchone()
            return int(row[0])

    def user_vote(self, exchange_id: str, platform: str, user_id: str) -> int:
        rows = self._query(
            "SELECT value FROM votes WHERE exchange_id = ? AND platform = ? AND user_id = ?",
            (exchange_id, platform, user_id),
        )
        return int(rows[0][0]) if rows else 0

    def promotion_score(self, exchange_id: str, asker_platform: str, asker_id: str, asker_counts: bool) -> int:
        """The net score that decides whether a reply becomes an example: the asker's own 👍 counts
        only when `asker_counts` (an admin); their 👎 always counts."""
        rows = self._query(
            "SELECT COALESCE(SUM(CASE WHEN platform = ? AND user_id = ? AND value > 0 AND NOT ? THEN 0 "
            "ELSE value END), 0) FROM votes WHERE exchange_id = ?",
            (asker_platform, asker_id, asker_counts, exchange_id),
        )
        return int(rows[0][0])

    def score(self, exchange_id: str) -> int:
        return int(self._query("SELECT COALESCE(SUM(value), 0) FROM votes WHERE exchange_id = ?", (exchange_id,))[0][0])

    def scored_exchanges(self) -> list[tuple[Exchange, int]]:
        """Every exchange that has votes, with its net score."""
        rows = self._query(
            """SELECT e.*, SUM(v.value) AS score FROM exchanges e JOIN votes v ON v.exchange_id = e.id
               GROUP BY e.id ORDER BY e.created_at"""
        )
        return [(exchange_from_row(row), int(row["score"])) for row in rows]

    # corrections -------------------------------------------------------------------------------

    def add_correction(
        self, exchange_id: str | None, platform: str, user_id: str, question: str, answer: str, accepted_by: str | None
    ) -> Correction:
        now = time.time()
        correction = Correction(
            id=uuid.uuid4().hex[:8],
            created_at=now,
            exchange_id=exchange_id,
            platform=platform,
            user_id=user_id,
            question=question,
            answer=answer,
            status="accepted" if accepted_by else "pending",
            reviewed_by=accepted_by,
        )
        with self._tx() as db:
            db.execute(
                "INSERT INTO corrections VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    correction.id,
                    now,
                    exchange_id,
                    platform,
                    user_id,
                    question,
                    answer,
                    correction.status,
                    accepted_by,
                    now if accepted_by else None,
                ),
            )
            if accepted_by:
                _queue_sync(db, "correction", correction.id)
        return correction

    def count_pending_corrections(self, platform: str, user_id: str) -> int:
        rows = self._query(
            "SELECT COUNT(*) FROM corrections WHERE platform = ? AND user_id = ? AND status = 'pending'",
            (platform, user_id),
        )
        return int(rows[0][0])

    def corrections(self, status: str | None = None) -> list[Correction]:
        if status:
            rows = self._query("SELECT * FROM corrections WHERE status = ? ORDER BY created_at", (status,))
        else:
            rows = self._query("SELECT * FROM corrections ORDER BY created_at")
        return [correction_from_row(row) for row in rows]

    def review_correction(self, correction_id: str, accept: bool, reviewer: str) -> Correction | None:
        """Accept or reject a pending correction; None when no pending correction has that id."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE corrections SET status = ?, reviewed_by = ?, reviewed_at = ? "
                "WHERE id = ? AND status = 'pending'",
                ("accepted" if accept else "rejected", reviewer, time.time(), correction_id),
            )
            if cursor.rowcount != 1:
                return None
            if accept:
                _queue_sync(db, "correction", correction_id)
            row = db.execute("SELECT * FROM corrections WHERE id = ?", (correction_id,)).fetchone()
        return correction_from_row(row)

    # examples owed to the example store --------------------------------------------------------

    def pending_example_syncs(self) -> list[tuple[str, str]]:
        """(kind, ref) of feedback whose example the example store may not have yet, oldest first."""
        return [(row[0], row[1]) for row in self._query("SELECT kind, ref FROM example_sync ORDER BY queued_at")]

    def example_synced(self, kind: str, ref: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM example_sync WHERE kind = ? AND ref = ?", (kind, ref))

    def correction(self, correction_id: str) -> Correction | None:
        rows = self._query("SELECT * FROM corrections WHERE id = ?", (correction_id,))
        return correction_from_row(rows[0]) if rows else None


def _queue_sync(db: sqlite3.Connection, kind: str, ref: str) -> None:
    db.execute("INSERT INTO example_sync VALUES (?, ?, ?) ON CONFLICT (kind, ref) DO NOTHING", (kind, ref, time.time()))
