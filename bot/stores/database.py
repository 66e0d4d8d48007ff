"""The feedback store's database: an engine for SQLite or PostgreSQL with the same guarantees on
both (every write in a real transaction that commits before the store returns), the dialect's
INSERT (for its ON CONFLICT clauses) and the versioned migrations (Alembic, bot/stores/migrations/)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url

MIGRATIONS = Path(__file__).with_name("migrations")
# Key of the PostgreSQL advisory lock that serializes replicas migrating the same database at once.
MIGRATION_LOCK_KEY = 0x66EED0B0
WRITE = "feedback_write"  # execution option: this transaction writes (SQLite takes the lock at BEGIN)


def database_url(target: str | Path) -> URL:
    """A SQLAlchemy URL from a file path (SQLite) or a `postgresql://` / `sqlite:///` URL."""
    if isinstance(target, Path) or "://" not in target:
        return URL.create("sqlite", database=str(Path(target)))
    url = make_url(target)
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")  # psycopg 3, not SQLAlchemy's default psycopg2
    if url.get_backend_name() == "sqlite":
        return url
    raise ValueError(f"the feedback store needs a postgresql:// URL or a SQLite path, not {url.drivername}://…")


def open_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # pre_ping: a connection the server dropped (a restart, a failover) is replaced before a write
    # fails on it; the timeout makes an unreachable server an error, not a hang.
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # sqlite3's own transaction handling skips BEGIN before DDL and reads; SQLAlchemy emits it instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")  # another process's write: wait, don't fail (first: WAL may wait)
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a vote acknowledged survives power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A writer takes the write lock at BEGIN: a read-then-write transaction (claim_event, set_vote)
    # can then never fail halfway on a lock upgrade, and two processes' writes queue, not interleave.
    connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITE) else "BEGIN")


def write_lock(engine: Engine) -> AbstractContextManager[Any]:
    """SQLite has one writer at a time anyway: this process's threads queue here rather than in
    busy_timeout's polling. PostgreSQL takes row locks, so its writers run side by side."""
    return threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()


def insert(engine: Engine) -> Any:
    """The dialect's `insert` (both offer `on_conflict_do_update` / `on_conflict_do_nothing`)."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema revision, in one transaction. Concurrent starts are
    safe: SQLite's BEGIN IMMEDIATE and PostgreSQL's advisory lock let one migrate while the others
    wait, and then find it done. A SQLite file from before versioned migrations has no
    alembic_version table: the revisions are written to find what it has and add only the rest."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.execution_options(**{WRITE: True}).begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
