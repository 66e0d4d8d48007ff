"""Fixtures for the Discord adapter tests: the emulator, a core on the fake generator, a running bot."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.discord_bot.client import build_client
from bot.core import Core
from tests.discord_adapter.helpers import ADMIN_ID, BotThread
from tests.emulators.discord_api import DiscordEmulator
from tests.fakes import FakeEngine


@pytest.fixture
def emulator() -> Iterator[DiscordEmulator]:
    with DiscordEmulator() as emu:
        yield emu
    # Every request the bot sent is valid against Discord's published description (tests/emulators/discord_spec.py).
    shown = "\n".join(f"{v.method} {v.path}: {v.message}" for v in emu.spec.violations[:10])
    assert not emu.spec.violations, (
        f"requests Discord's OpenAPI description (commit {emu.spec.commit}) refuses:\n{shown}"
    )


@pytest.fixture
def fast_core(make_core: Callable[..., Core], emulator: DiscordEmulator) -> Callable[..., Core]:
    """A core on the fake generator, configured to talk to the emulator."""

    def factory(
        reply: str = "This is a test reply.",
        delay_s: float = 0.0,
        gate: threading.Event | None = None,
        **overrides: Any,
    ) -> Core:
        overrides.setdefault("tuning__discord_stream_interval_s", 0.1)
        overrides.setdefault("discord__guild_id", int(emulator.guild_id))
        return make_core(
            FakeEngine(reply=reply, delay_s=delay_s, gate=gate),
            admins=(f"discord:{ADMIN_ID}",),
            discord__api_url=emulator.api_url,
            discord__gateway_url=emulator.gateway_url,
            **overrides,
        )

    return factory


@pytest.fixture
def start_bot(emulator: DiscordEmulator) -> Iterator[Callable[..., BotThread]]:
    """start_bot(core, settings=None, **client_options) -> a running bot, connected and ready."""
    running: list[BotThread] = []

    def start(core: Core, settings: Any = None, **options: Any) -> BotThread:
        options.setdefault("guild_ready_timeout", 0.1)  # READY -> ready without the 2 s wait
        runner = BotThread(build_client(core, settings, **options), emulator.token)
        running.append(runner)
        runner.start()
        return runner

    yield start
    for runner in running:
        runner.stop()
