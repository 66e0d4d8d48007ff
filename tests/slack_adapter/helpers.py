"""Constants and helpers shared by the Slack adapter tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.core import Core
from tests.emulators.slack_api import ApiCall, SlackEmulator

ADMIN, ALICE, BOB = "UADMIN", "UALICE", "UBOB"
CHANNEL, DM = "C0GENERAL", "D0ALICE"
REPLY = "Paris is the capital of France. It has been since the tenth century, more or less."
INTERVAL = 0.1  # stream_interval_s in tests: short, yet long enough to see throttling


def slack_overrides(slack: SlackEmulator, **extra: Any) -> dict[str, Any]:
    return {
        "slack__bot_token": slack.bot_token,
        "slack__app_token": slack.app_token,
        "slack__signing_secret": slack.signing_secret,
        "slack__api_url": slack.api_url,
        "tuning__slack_stream_interval_s": INTERVAL,
        # Most tests count the edit-based path's calls (placeholder, chat.update); the tests of
        # native streaming ask for it.
        "tuning__slack_streaming": "edit",
        **extra,
    }


StartBot = Callable[..., Core]


def final_reply(slack: SlackEmulator, channel: str, text: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until a bot message in `channel` shows `text` (the streamed reply is complete)."""
    return slack.wait_for(
        lambda: next((m for m in slack.bot_messages(channel) if m["text"] == text), None),
        timeout,
        f"a bot message {text[:40]!r}… in {channel}",
    )


def updates_of(slack: SlackEmulator, ts: str) -> list[ApiCall]:
    return [c for c in slack.ok_calls("chat.update") if c.params["ts"] == ts]


def posts_in(slack: SlackEmulator, channel: str) -> list[ApiCall]:
    return [c for c in slack.ok_calls("chat.postMessage") if c.params["channel"] == channel]


def exchange_of(slack: SlackEmulator, core: Core, channel: str, ts: str) -> str:
    """The exchange a bot message is linked to (the link may trail the last update by a moment)."""
    return slack.wait_for(
        lambda: core.exchange_for_message("slack", f"{channel}:{ts}"), 5.0, f"a link from {channel}:{ts}"
    )
