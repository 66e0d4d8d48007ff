"""A real PostgreSQL for the tests, never a mock: the machine's (CI's) at 127.0.0.1:5432, else one
started from the `pgserver` package (a newcomer's laptop); else the tests that need one skip,
except under CI, where they fail."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.stores.database import database_url

ENV = "BOT_TEST_DATABASE_URL"  # a server of your own: `postgresql://user@host:port/db`
LOCAL = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")


def _answers(url: str) -> str | None:
    """None when `url` accepts a connection, else why not."""
    engine = create_engine(database_url(url), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as exc:
        return f"{make_url(url).render_as_string()}: {str(exc).strip().splitlines()[0]}"
    finally:
        engine.dispose()


def _unavailable(reason: str) -> NoReturn:
    message = f"no PostgreSQL for the feedback store tests ({reason})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run them, so it fails instead of skipping")
    pytest.skip(message)


@contextmanager
def server(scratch: Path) -> Iterator[str]:
    """The URL of a server where the tests may create schemas."""
    if os.environ.get(ENV):
        problem = _answers(os.environ[ENV])
        if problem:
            pytest.fail(f"{ENV} is set but does not answer: {problem}")
        yield os.environ[ENV]
        return
    problems = []
    for url in LOCAL:
        problem = _answers(url)
        if problem is None:
            yield url
            return
        problems.append(problem)
    try:
        import pgserver  # PostgreSQL's binaries in a wheel: starts in about a second, as any user
    except ImportError:
        _unavailable("; ".join([*problems, "and the pgserver package is not installed"]))
    started = pgserver.get_server(scratch, cleanup_mode="stop")
    try:
        yield started.get_uri()
    finally:
        started.cleanup()


@contextmanager
def scratch_schema(base_url: str) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema (dropped afterwards): each test its own
    database, as far as the store can tell, for the price of a CREATE SCHEMA."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(database_url(base_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
