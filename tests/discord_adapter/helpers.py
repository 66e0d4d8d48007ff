"""Constants and helpers shared by the Discord adapter tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from adapters.discord_bot.client import DiscordBot
from bot.core import Core
from bot.types import Incoming
from tests.emulators.discord_api import DiscordEmulator, text_displays, wait_until
from tests.fakes import FakeTokenizer

ADMIN_ID = "111"
TIMEOUT = 20.0  # generous: CI machines have 2 busy cores


class BotThread:
    """Runs a DiscordBot on its own event loop in a thread, as `bot run` runs it in the main one."""

    def __init__(self, client: DiscordBot, token: str) -> None:
        self.client = client
        self.token = token
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, name="discord-bot", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            running = asyncio.create_task(self.client.start(self.token))
            stopping = asyncio.create_task(self._stop.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            await self.client.close()
            stopping.cancel()
            await running  # re-raises what made the client stop, if anything

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the test through `error`
            self.error = exc

    def start(self) -> None:
        self.thread.start()
        wait_until(lambda: self.client.is_ready() or self.error, TIMEOUT, what="the bot to be ready")
        if self.error:
            raise self.error

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the bot did not stop"
        if self.error:
            raise self.error


def buttons(message: dict[str, Any]) -> list[str]:
    """The custom ids of a message's buttons (in its action rows), in order."""
    rows = [c for c in message.get("components", []) if c.get("type") == 1]
    return [c["custom_id"] for row in rows for c in row.get("components", [])]


def text_of(message: dict[str, Any]) -> str:
    """What a message shows: its content, or a Components V2 message's text displays."""
    return message["content"] or "".join(text_displays(message.get("components", [])))


def final_reply(
    emulator: DiscordEmulator, user_message: dict[str, Any], expected_parts: int = 1, with_buttons: bool = True
) -> list[dict[str, Any]]:
    """Wait until the bot's answer to `user_message` is complete (its 👍/👎 buttons on) and return it."""

    def done() -> list[dict[str, Any]] | None:
        parts = emulator.replies_to(user_message["id"])
        if len(parts) < expected_parts:
            return None
        if with_buttons and not buttons(parts[-1]):
            return None
        if any(text_of(part).endswith(" …") or text_of(part).startswith("⏳") for part in parts):
            return None  # still being written
        return parts

    return wait_until(done, TIMEOUT, what=f"the answer to {user_message['content']!r}")


def token_id(word: str) -> int:
    return FakeTokenizer()(word)["input_ids"][0]


def command_spy(core: Core) -> list[tuple[str, dict[str, Any] | None]]:
    """Record the commands (name, typed options) the adapter hands the core, and still run them."""
    calls: list[tuple[str, dict[str, Any] | None]] = []
    real = core.handle

    def spy(event: Any) -> Any:
        if isinstance(event, Incoming) and event.command is not None:
            calls.append((event.command, dict(event.command_args) if event.command_args is not None else None))
        return real(event)

    core.handle = spy  # type: ignore[method-assign]
    return calls


def followups(emulator: DiscordEmulator, interaction: dict[str, Any], count: int = 1) -> list[Any]:
    return wait_until(
        lambda: (
            (calls := emulator.calls_to("POST", rf"/webhooks/{emulator.app_id}/{interaction['token']}"))
            and len(calls) >= count
            and calls
        ),
        TIMEOUT,
        what=f"the follow-up to /{interaction['data']['name']}",
    )
