"""Fixtures for the Slack adapter tests: the emulator, and the bot served over Socket Mode or HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.slack import Running, build_app, start_http, start_socket_mode
from bot.core import Core
from tests.emulators.slack_api import SlackEmulator
from tests.fakes import FakeEngine
from tests.slack_adapter.helpers import ADMIN, ALICE, BOB, REPLY, StartBot, slack_overrides


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emulator:
        emulator.add_user(ALICE, "alice")
        emulator.add_user(BOB, "bob")
        yield emulator


@pytest.fixture
def socket_bot(slack: SlackEmulator, make_core: Callable[..., Core]) -> Iterator[StartBot]:
    """start(generator=None, wrap=None, **settings) -> Core, served over Socket Mode.

    `wrap` puts a thin layer around the core (to slow or script its commands)."""
    running: list[Running] = []

    def start(generator: FakeEngine | None = None, wrap: Callable[[Core], Any] | None = None, **extra: Any) -> Core:
        core = make_core(generator or FakeEngine(REPLY), admins=(f"slack:{ADMIN}",), **slack_overrides(slack, **extra))
        running.append(start_socket_mode(build_app(wrap(core) if wrap else core, core.settings), core.settings))
        slack.wait_connected()
        return core

    yield start
    for app in running:
        app.stop()


@pytest.fixture
def http_bot(slack: SlackEmulator, make_core: Callable[..., Core]) -> Iterator[tuple[Core, str]]:
    """A core served in HTTP mode; yields (core, the events URL)."""
    core = make_core(FakeEngine(REPLY), admins=(f"slack:{ADMIN}",), **slack_overrides(slack, slack__mode="http"))
    running = start_http(build_app(core, core.settings), core.settings, host="127.0.0.1", port=0)
    yield core, running.url
    running.stop()
