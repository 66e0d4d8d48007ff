"""Who asks and from where, as the core's rules read it: the server, the caller's role ids, and
whether the place is private."""

from __future__ import annotations

import discord


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
