"""The feedback store's schema: migrations bring an old SQLite file up to date with its rows, and
give both engines exactly the tables that the store's code declares."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.stores.database import MIGRATIONS
from bot.stores.feedback import FeedbackStore
from bot.stores.records import metadata
from bot.types import ConversationKey, ReplyStats

# The store's schema before scopes (and before the example-sync queue and two indexes), as such a
# bot wrote its feedback.sqlite3; rows follow.
OLD_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE exchanges (id TEXT PRIMARY KEY, created_at REAL NOT NULL, platform TEXT NOT NULL,
    conversation TEXT NOT NULL, user_id TEXT NOT NULL, user_text TEXT NOT NULL, reply TEXT NOT NULL,
    prompt_json TEXT NOT NULL, example_ids_json TEXT NOT NULL, lora_version TEXT, latency_s REAL,
    first_token_s REAL, prompt_tokens INTEGER, completion_tokens INTEGER);
CREATE INDEX exchanges_by_conversation ON exchanges (conversation, created_at);
CREATE TABLE message_links (platform TEXT NOT NULL, message_ref TEXT NOT NULL,
    exchange_id TEXT NOT NULL REFERENCES exchanges (id), PRIMARY KEY (platform, message_ref));
CREATE TABLE votes (exchange_id TEXT NOT NULL REFERENCES exchanges (id), platform TEXT NOT NULL,
    user_id TEXT NOT NULL, value INTEGER NOT NULL CHECK (value IN (-1, 1)), updated_at REAL NOT NULL,
    PRIMARY KEY (exchange_id, platform, user_id));
CREATE TABLE corrections (id TEXT PRIMARY KEY, created_at REAL NOT NULL, exchange_id TEXT,
    platform TEXT NOT NULL, user_id TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')), reviewed_by TEXT,
    reviewed_at REAL);
CREATE TABLE seen_events (platform TEXT NOT NULL, event_id TEXT NOT NULL, seen_at REAL NOT NULL,
    PRIMARY KEY (platform, event_id));
CREATE TABLE conversation_resets (conversation TEXT PRIMARY KEY, reset_at REAL NOT NULL);
INSERT INTO exchanges VALUES ('e1', 1700000000.5, 'slack', 'slack:C1:1700.1', 'U1', 'Where is the VPN?',
    'vpn.example.com', '[{"role": "user", "content": "Where is the VPN?"}]', '["x1"]', 'v0002', 1.5, 0.25, 30, 5);
INSERT INTO exchanges VALUES ('e2', 1700000001.0, 'discord', 'discord:99:', 'D1', 'hi', 'hello', '[]', '[]',
    NULL, NULL, NULL, NULL, NULL);
INSERT INTO message_links VALUES ('slack', 'C1:1700.2', 'e1');
INSERT INTO votes VALUES ('e1', 'slack', 'U2', 1, 1700000002.0);
INSERT INTO corrections VALUES ('c1', 1700000003.0, 'e1', 'slack', 'U3', 'Where is the VPN?', 'vpn2.example.com',
    'pending', NULL, NULL);
INSERT INTO conversation_resets VALUES ('slack:C1:1700.1', 1700000000.0);
"""


def old_file(path: Path, *more_sql: str) -> Path:
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA + "".join(more_sql))
    db.close()
    return path


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def revision_of(store: FeedbackStore) -> str:
    with store.engine.connect() as db:
        return str(db.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def test_a_sqlite_file_from_before_scopes_opens_and_keeps_everything(tmp_path: Path) -> None:
    claimed = f"INSERT INTO seen_events VALUES ('slack', 'Ev1', {time.time() - 60});"  # a minute ago
    store = FeedbackStore(old_file(tmp_path / "feedback.sqlite3", claimed))
    try:
        assert revision_of(store) == head_revision()
        old = store.exchange("e1")
        assert old is not None and old.scope == "slack:C1"  # before scopes: the channel, the narrowest
        kept = (old.user_text, old.example_ids, old.lora_version, old.stats, old.created_at)
        assert kept == ("Where is the VPN?", ("x1",), "v0002", ReplyStats(1.5, 0.25, 30, 5), 1700000000.5)
        assert store.exchange("e2").scope == "discord:99"  # type: ignore[union-attr]
        assert store.exchange("e2").stats is None, "a row without measurements"  # type: ignore[union-attr]
        assert store.exchange_for_message("slack", "C1:1700.2") == "e1" and store.score("e1") == 1
        assert [c.id for c in store.corrections("pending")] == ["c1"]
        assert store.claim_event("slack", "Ev1") is False  # its dedup window goes on
        assert store.history(ConversationKey("slack", "C1", "1700.1"), 5) != []  # reset before it
        assert store.set_vote("e1", "slack", "U4", 1) == 2  # and the tables it lacked now work
        assert store.pending_example_syncs() == [("exchange", "e1")]
        with store.engine.connect() as db:
            assert db.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            indexes = {row[1] for row in db.execute(text("PRAGMA index_list(seen_events)"))}
            assert "seen_events_by_time" in indexes
    finally:
        store.close()
    reopened = FeedbackStore(tmp_path / "feedback.sqlite3")  # a second start migrates nothing
    assert reopened.exchange("e1").scope == "slack:C1" and reopened.score("e1") == 2  # type: ignore[union-attr]
    reopened.close()


def test_a_sqlite_file_with_scopes_but_no_migration_history_keeps_its_scopes(tmp_path: Path) -> None:
    """The store of just before versioned migrations added the column itself and set real scopes."""
    path = old_file(
        tmp_path / "feedback.sqlite3",
        "ALTER TABLE exchanges ADD COLUMN scope TEXT NOT NULL DEFAULT '';",
        "UPDATE exchanges SET scope = 'slack:T1' WHERE id = 'e1';",
    )
    store = FeedbackStore(path)
    try:
        assert revision_of(store) == head_revision()
        assert store.exchange("e1").scope == "slack:T1"  # type: ignore[union-attr]
        assert store.exchange("e2").scope == ""  # type: ignore[union-attr]
    finally:
        store.close()


def test_the_migrations_build_exactly_the_declared_tables(feedback_store: FeedbackStore) -> None:
    with feedback_store.engine.connect() as db:
        differences = compare_metadata(MigrationContext.configure(db), metadata)
    assert differences == []


def test_replicas_starting_together_migrate_once(feedback_store: FeedbackStore) -> None:
    """Four stores open one new database at the same moment: one migrates, the others wait for it."""
    with feedback_store.engine.begin() as db:  # back to an empty database
        for table in [*reversed(metadata.sorted_tables)]:
            db.execute(text(f"DROP TABLE {table.name}"))
        db.execute(text("DROP TABLE alembic_version"))
    url = feedback_store.url.render_as_string(hide_password=False)
    opened: list[FeedbackStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        start.wait()
        try:
            opened.append(FeedbackStore(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(opened) == 4
    assert {revision_of(store) for store in opened} == {head_revision()}
    args = ([], (), None, ReplyStats(0.1, None, 1, 1), "slack:T1")
    exchange_id = opened[0].add_exchange(ConversationKey("slack", "C1", ""), "U1", "q", "a", *args)
    assert all(store.exchange(exchange_id) is not None for store in opened)
    for store in opened:
        store.close()
