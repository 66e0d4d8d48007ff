"""Where the bot serves on Discord once DISCORD_ALLOWED_GUILDS is set: it leaves every other server
(at start and when invited to one), and answers DMs only from members of a listed server, as a DM
has no server to check (DISCORD_DM_OPEN=true answers DMs from anyone). Unset, it serves everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import discord
from cachetools import TTLCache

from bot.config import Settings

log = logging.getLogger(__name__)

# Who is a member of a listed server, kept for a while: one REST lookup a user, not one a message.
MEMBERS_KEPT = 4096
MEMBERSHIP_TTL_S = 600.0
NOT_A_MEMBER = "I answer direct messages only from members of the servers I serve."


class Invitations:
    def __init__(self, client: discord.Client, settings: Settings) -> None:
        self._client = client
        self._listed = {int(g) for g in settings.discord.allowed_guilds}
        self._dm_open = settings.discord.dm_open
        self._members: TTLCache[int, bool] = TTLCache(MEMBERS_KEPT, MEMBERSHIP_TTL_S)

    async def leave_unlisted(self, guilds: Iterable[discord.Guild]) -> None:
        """Leave the servers not listed: their members could otherwise DM the bot, or wait on a command."""
        for guild in guilds:
            if self._listed and guild.id not in self._listed:
                log.warning("leaving Discord server %s (%s): not in DISCORD_ALLOWED_GUILDS", guild.id, guild.name)
                try:
                    await guild.leave()
                except discord.HTTPException as exc:
                    log.error("could not leave Discord server %s: %s", guild.id, exc)

    async def may_dm(self, user_id: int) -> bool:
        """Whether the bot answers this user's DMs: anyone's with no list (or DISCORD_DM_OPEN), else a
        listed server's members' (looked up once in MEMBERSHIP_TTL_S; unknown means no)."""
        if not self._listed or self._dm_open:
            return True
        member = self._members.get(user_id)
        if member is None:
            member = any([await self._is_member(guild_id, user_id) for guild_id in sorted(self._listed)])
            self._members[user_id] = member
        return member

    async def _is_member(self, guild_id: int, user_id: int) -> bool:
        guild = self._client.get_guild(guild_id)
        if guild is None:
            return False
        if guild.get_member(user_id) is not None:
            return True
        try:
            await guild.fetch_member(user_id)
        except discord.NotFound:
            return False
        except discord.HTTPException as exc:
            log.warning("Discord: is %s a member of %s? The lookup failed (%s): not answered", user_id, guild_id, exc)
            return False
        return True
