"""Which conversation a Discord message belongs to: a DM channel is one; a thread is one; in a
channel, a reply chain is one, keyed by the id of the user message that started it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord_bot import PLATFORM
from bot.types import ConversationKey

if TYPE_CHECKING:
    from bot.core import Core

MAX_CHAIN = 50  # reply-chain hops followed to find where a conversation started


class _LRU(OrderedDict[int, ConversationKey]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: int, value: ConversationKey) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class Conversations:
    """Resolves conversations, remembering those of the messages it has seen (bot and user)."""

    def __init__(self, client: discord.Client, core: Core, size: int = 10_000) -> None:
        self.client, self.core = client, core
        self._known = _LRU(size)  # message id -> its conversation

    def remember(self, message_id: int, conversation: ConversationKey) -> None:
        self._known.remember(message_id, conversation)

    async def replied_bot_message(self, message: discord.Message) -> int | None:
        """The id of the bot message that `message` replies to, if it replies to one."""
        ref = message.reference
        if ref is None or ref.message_id is None or ref.type is not discord.MessageReferenceType.reply:
            return None
        if isinstance(ref.resolved, discord.Message):
            return ref.message_id if self.client.user and ref.resolved.author.id == self.client.user.id else None
        # Discord left the replied-to message out (too old, deleted): the core knows our replies.
        exchange = await asyncio.to_thread(self.core.exchange_for_message, PLATFORM, str(ref.message_id))
        return ref.message_id if exchange else None

    async def of(self, message: discord.Message, replied_bot_id: int | None) -> ConversationKey:
        channel = message.channel
        if isinstance(channel, discord.Thread):
            return ConversationKey(PLATFORM, str(channel.parent_id), str(channel.id))
        if message.guild is None:
            return ConversationKey(PLATFORM, str(channel.id))
        if replied_bot_id is None:
            return ConversationKey(PLATFORM, str(channel.id), str(message.id))
        return await self._chain(channel, replied_bot_id)

    async def _chain(self, channel: Any, bot_message_id: int) -> ConversationKey:
        """The conversation of a reply chain, keyed by the user message that started it.

        Usually remembered from when we posted; after a restart, walk the chain up: each bot
        message replies to the user message that asked, which may reply to an earlier answer.
        """
        current = bot_message_id
        for _ in range(MAX_CHAIN):
            known = self._known.get(current)
            if known is not None:
                return known
            found = await self._fetch(channel, current)
            parent = found.reference if found is not None else None
            if found is None or parent is None or parent.message_id is None:
                break
            # A user message continues the chain only if it replies to one of our answers.
            if (
                self.client.user is not None
                and found.author.id != self.client.user.id
                and not await asyncio.to_thread(self.core.exchange_for_message, PLATFORM, str(parent.message_id))
            ):
                break
            current = parent.message_id
        return ConversationKey(PLATFORM, str(channel.id), str(current))

    async def _fetch(self, channel: Any, message_id: int) -> discord.Message | None:
        cached = discord.utils.get(self.client.cached_messages, id=message_id)
        if cached is not None:
            return cached
        try:
            return await channel.fetch_message(message_id)
        except discord.HTTPException:
            return None


def of_interaction(interaction: discord.Interaction) -> ConversationKey:
    channel = interaction.channel
    if isinstance(channel, discord.Thread):
        return ConversationKey(PLATFORM, str(channel.parent_id), str(channel.id))
    return ConversationKey(PLATFORM, str(interaction.channel_id or ""))
