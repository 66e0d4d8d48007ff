"""The Discord side of the adapter's work: endpoints, intents, the messages that show a reply,
the typing indicator, and the ids the core's admin rule reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import discord
import yarl

from adapters.streaming import RateLimited
from adapters.text import split_text

if TYPE_CHECKING:
    from bot.config import DiscordSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CHARS = 2000  # Discord's limit for a message's content


def split_message(text: str) -> list[str]:
    return split_text(text, MAX_CHARS)


def api_base(url: str) -> str:
    """DISCORD_API_URL as discord.py's Route.BASE wants it: with /api/v10 (added if missing)."""
    url = url.rstrip("/")
    if re.search(r"/v\d+$", url):
        return url
    return url + ("/v10" if url.endswith("/api") else "/api/v10")


def configure_endpoints(settings: DiscordSettings) -> None:
    """Point discord.py at a REST proxy / gateway proxy (or the emulator in tests).

    Both are class attributes in discord.py, so this applies to every client in the process.
    """
    if settings.api_url:
        discord.http.Route.BASE = api_base(settings.api_url)
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


def intents(message_content: bool = True) -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True  # channels, threads and roles (for DISCORD_ADMIN_ROLE)
    wanted.guild_messages = True
    wanted.dm_messages = True
    # Privileged (enable it in the developer portal); without it Discord still sends the content of
    # DMs and of messages that mention the bot.
    wanted.message_content = message_content
    wanted.guild_reactions = True
    wanted.dm_reactions = True
    return wanted


class DiscordScreen:
    """A reply's messages (streaming.Screen), driven from an answer thread: every call runs on
    the client's event loop. Each part replies to the user's message, so a reply to any part
    continues the same chain (see DiscordBot._conversation).

    Once `finish_with` has armed it, the post or edit that shows the reply's last part carries the
    feedback buttons, so the final text and its buttons arrive in one call.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, channel: discord.abc.Messageable, reference: discord.MessageReference
    ) -> None:
        self.loop, self.channel, self.reference = loop, channel, reference
        self.messages: dict[str, discord.Message] = {}
        self._view: discord.ui.View | None = None
        self._last_index = -1  # which of the messages, in posting order, shows the last part
        self.buttons_on: str | None = None  # the message that carries the buttons

    def finish_with(self, view: discord.ui.View, final_text: str) -> None:
        """Put `view` on the message that will show the last part of `final_text`, split as
        streaming splits it. Streaming posts parts in order and deletes from the end, so the
        message at that index in posting order is the one (two parts may read the same)."""
        self._view, self._last_index = view, len(split_message(final_text)) - 1

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

    def _buttons(self, index: int) -> dict[str, Any]:
        return {"view": self._view} if self._view is not None and index == self._last_index else {}

    def post(self, text: str) -> str:
        extra = self._buttons(len(self.messages))
        sent = self._run(self.channel.send(text, reference=self.reference, mention_author=False, **extra))
        self.messages[str(sent.id)] = sent
        if extra:
            self.buttons_on = str(sent.id)
        return str(sent.id)

    def edit(self, ref: str, text: str) -> None:
        extra = self._buttons(list(self.messages).index(ref))
        self.messages[ref] = self._run(self.messages[ref].edit(content=text, **extra))
        if extra:
            self.buttons_on = ref

    def delete(self, ref: str) -> None:
        self._run(self.messages.pop(ref).delete())


def retry_after(exc: discord.HTTPException) -> float:
    """Seconds a 429 asks to wait (discord.py keeps the response, not the body's `retry_after`)."""
    headers = exc.response.headers if exc.response is not None else {}
    for name in ("X-RateLimit-Reset-After", "Retry-After"):  # the first is precise, the second whole seconds
        with contextlib.suppress(KeyError, ValueError):
            return float(headers[name])
    return 1.0


def private_to(channel: object) -> str:
    """A private thread's id (what is taught there stays there, as in a DM), else ''."""
    if isinstance(channel, discord.Thread) and channel.type is discord.ChannelType.private_thread:
        return str(channel.id)
    return ""


def role_ids(user: discord.User | discord.Member) -> tuple[str, ...]:
    """Role ids only: a name can be copied by anyone in a server of their own."""
    if not isinstance(user, discord.Member):
        return ()
    return tuple(str(r.id) for r in user.roles)


def server_id(guild: discord.Guild | None) -> str:
    """The server a request came from ('' in a DM); the core honours admin roles only in its own."""
    return str(guild.id) if guild is not None else ""


async def keep_typing(channel: discord.abc.Messageable) -> None:
    """Show "typing…" until cancelled (Discord shows it for about 10 s per trigger)."""
    while True:
        try:
            await channel.typing()
        except discord.HTTPException as exc:
            log.debug("typing indicator failed: %s", exc)
        await asyncio.sleep(8)
