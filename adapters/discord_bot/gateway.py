"""Connecting to Discord: its endpoints (a proxy's, or the emulator's in tests), the intents, and
the gateway connection without the privileged Message Content intent.

Without it Discord still sends the text of DMs and of messages that mention the bot, so the bot
keeps a mentions-and-DMs mode: asked for by `discord.message_content = false`, or taken when the
gateway refuses the intent (close code 4014, which discord.py raises as PrivilegedIntentsRequired
before it gives up): the client identifies again without it instead of not starting.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import discord
import yarl

if TYPE_CHECKING:
    from bot.config import DiscordSettings

log = logging.getLogger(__name__)

WITHOUT_CONTENT = (
    "Discord runs without the Message Content intent: it answers mentions, DMs and replies to its answers "
    "that mention it, and slash commands and buttons work; it does not see follow-ups in threads or "
    "replies without a mention"
)


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


class ContentFallbackClient(discord.Client):
    """A client that falls back to the mentions-and-DMs mode when the intent is refused."""

    def content_withheld(self, message: discord.Message, mentions_bot: bool) -> bool:
        """Whether Discord withheld `message`'s text (a server message not mentioning the bot)."""
        return message.guild is not None and not mentions_bot and not self.intents.message_content

    async def connect(self, *, reconnect: bool = True) -> None:
        try:
            await super().connect(reconnect=reconnect)
        except discord.PrivilegedIntentsRequired:
            if not self.intents.message_content:
                raise
            log.warning("Discord refused the Message Content intent: enable it in the developer portal, or set "
                        "DISCORD_MESSAGE_CONTENT=false not to ask. %s.", WITHOUT_CONTENT)  # fmt: skip
            # discord.py has no public way to change intents once built: the next IDENTIFY reads this.
            self._connection._intents.message_content = False
            await super().connect(reconnect=reconnect)
