"""The messages that show a reply on Discord (streaming.Screen), the feedback buttons on the one
that shows the last part of a finished reply, where it came from in small text under it, and the
typing indicator.

A reply up to 2,000 characters is a plain message (its `content`). A longer one is a Components V2
message (a text display of up to 4,000 characters, the buttons in an action row under it), so most
long answers stay one message instead of two; a message that grows past 2,000 while it streams is
turned into one. Past 4,000 the reply continues in another message, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Coroutine
from typing import Any, TypeVar

import discord
from discord import ui

from adapters.discord_bot.feedback import VOTE_ID, VoteButton, feedback_view
from adapters.provenance import Provenance
from adapters.streaming import RateLimited
from adapters.text import plain_links, split_text

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CHARS = 2000  # Discord's limit for a message's content
LAYOUT_CHARS = 4000  # a Components V2 message: its text displays hold this many characters in all


def small_footer(about: Provenance) -> str:
    """Where a reply came from, as one line of Discord's small text (`-#`) under it; nothing for the
    base model with no verified answer."""
    return f"\n-# 📚 {about.line()}" if about.worth_showing else ""


def split_message(text: str) -> list[str]:
    """What the bot sends on Discord, in parts of at most MAX_CHARS, no link hiding its address."""
    return split_text(plain_links(text), MAX_CHARS)


class DiscordScreen:
    """A reply's messages (streaming.Screen), driven from an answer thread: every call runs on
    the client's event loop. Each part replies to the user's message, so a reply to any part
    continues the same chain (see DiscordBot._conversation)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, channel: discord.abc.Messageable, reference: discord.MessageReference
    ) -> None:
        self.loop, self.channel, self.reference = loop, channel, reference
        self.messages: dict[str, discord.Message] = {}

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        except discord.RateLimited as exc:  # over the client's max_ratelimit_timeout
            raise RateLimited(exc.retry_after) from exc
        except discord.HTTPException as exc:
            if exc.status != 429:
                raise
            # discord.py retried it already (five tries): let the stream skip or wait it out.
            raise RateLimited(retry_after(exc)) from exc

    def post(self, text: str, buttons: str | None = None) -> str:
        send = self.channel.send
        if len(text) > MAX_CHARS:  # a layout message carries no content: its text is a text display
            sent = self._run(send(reference=self.reference, mention_author=False, view=_layout(text, buttons)))
        else:
            sent = self._run(send(text, reference=self.reference, mention_author=False, **_view(buttons)))
        self.messages[str(sent.id)] = sent
        return str(sent.id)

    def edit(self, ref: str, text: str, buttons: str | None = None) -> None:
        message = self.messages[ref]
        if len(text) > MAX_CHARS or message.flags.components_v2:  # once a layout message, always one
            edited = message.edit(content=None, view=_layout(text, buttons or _shown_buttons(message)))
        else:
            edited = message.edit(content=text, **_view(buttons))
        self.messages[ref] = self._run(edited)

    def delete(self, ref: str) -> None:
        self._run(self.messages.pop(ref).delete())


def _layout(text: str, buttons: str | None) -> ui.LayoutView:
    """A Components V2 message: the text, and the feedback buttons of exchange `buttons` under it."""
    view = ui.LayoutView(timeout=None)
    view.add_item(ui.TextDisplay(text))
    if buttons:
        view.add_item(ui.ActionRow(VoteButton(buttons, 1), VoteButton(buttons, -1)))
    return view


def _shown_buttons(message: discord.Message) -> str | None:
    """The exchange whose buttons a layout message shows already (an edit rewrites its whole layout)."""
    for item in ui.LayoutView.from_message(message, timeout=None).walk_children():
        match = re.fullmatch(VOTE_ID, getattr(item, "custom_id", None) or "")
        if match:
            return match["exchange"]
    return None


def _view(buttons: str | None) -> dict[str, Any]:
    """The feedback buttons of exchange `buttons` as a send or edit argument; none leaves a message's view as it is."""
    return {"view": feedback_view(buttons)} if buttons else {}


def retry_after(exc: discord.HTTPException) -> float:
    """Seconds a 429 asks to wait (discord.py keeps the response, not the body's `retry_after`)."""
    headers = exc.response.headers if exc.response is not None else {}
    for name in ("X-RateLimit-Reset-After", "Retry-After"):  # the first is precise, the second whole seconds
        with contextlib.suppress(KeyError, ValueError):
            return float(headers[name])
    return 1.0


async def keep_typing(channel: discord.abc.Messageable) -> None:
    """Show "typing…" until cancelled (Discord shows it for about 10 s per trigger)."""
    while True:
        try:
            await channel.typing()
        except discord.HTTPException as exc:
            log.debug("typing indicator failed: %s", exc)
        await asyncio.sleep(8)
