"""The gateway connection without the privileged Message Content intent.

Without it Discord still sends the text of DMs and of messages that mention the bot, so the bot
keeps a mentions-and-DMs mode: asked for by `discord.message_content = false`, or taken when the
gateway refuses the intent (close code 4014, which discord.py raises as PrivilegedIntentsRequired
before it gives up): the client identifies again without it instead of not starting.
"""

from __future__ import annotations

import logging

import discord

log = logging.getLogger(__name__)

WITHOUT_CONTENT = (
    "Discord runs without the Message Content intent: it answers mentions, DMs and replies to its answers "
    "that mention it, and slash commands and buttons work; it does not see follow-ups in threads or "
    "replies without a mention"
)


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
