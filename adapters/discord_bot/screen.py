"""The Discord side of the adapter's work: endpoints, intents, the messages that show a reply,
the typing indicator, and the ids the core's admin rule reads."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import discord
import yarl

if TYPE_CHECKING:
    from bot.config import DiscordSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


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


def intents() -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True  # channels, threads and roles (for DISCORD_ADMIN_ROLE)
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True  # privileged: enable it in the developer portal
    wanted.guild_reactions = True
    wanted.dm_reactions = True
    return wanted


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
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def post(self, text: str) -> str:
        sent = self._run(self.channel.send(text, reference=self.reference, mention_author=False))
        self.messages[str(sent.id)] = sent
        return str(sent.id)

    def edit(self, ref: str, text: str) -> None:
        self._run(self.messages[ref].edit(content=text))

    def delete(self, ref: str) -> None:
        self._run(self.messages.pop(ref).delete())


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
