"""Fixtures for the Slack adapter tests: the emulator, and the bot served over Socket Mode or HTTP."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.app import build_app, start_socket_mode
from adapters.slack.http import Running, start_http
from bot.core import Core
from tests.conftest import REPO
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


@dataclass
class BotProcess:
    """The bot in its own process (tests/slack_adapter/bot_process.py) on `data_dir`."""

    process: subprocess.Popen[str]
    data_dir: Path
    url: str  # the events endpoint in HTTP mode, else ""

    def rss_peak_kib(self) -> int:
        """The process's peak resident memory so far (VmHWM), in KiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


@pytest.fixture
def bot_process(slack: SlackEmulator, tmp_path: Path) -> Iterator[Callable[..., BotProcess]]:
    """start(**settings) -> BotProcess: the bot on a FakeEngine, over Socket Mode unless slack__mode="http"."""
    started: list[BotProcess] = []

    def start(**extra: Any) -> BotProcess:
        data_dir = tmp_path / f"process{len(started)}"
        overrides = {"admins": [f"slack:{ADMIN}"], "tuning__min_similarity": 0.2, **slack_overrides(slack, **extra)}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "SLACK_", "DISCORD_"))}
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.slack_adapter.bot_process", str(data_dir), json.dumps(overrides)],
            cwd=REPO, env=env | {"PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(BotProcess(process, data_dir, ""))
        assert process.stdout is not None
        if not select.select([process.stdout], [], [], 60)[0]:
            raise AssertionError("the bot process did not start within 60 s")
        ready = process.stdout.readline().split()
        assert ready[:1] == ["ready"], f"the bot process failed to start: {ready}"
        started[-1].url = ready[1] if len(ready) > 1 else ""
        if "slack__mode" not in extra:
            slack.wait_connected()
        return started[-1]

    yield start
    for bot in started:
        bot.process.kill()
        bot.process.wait()
