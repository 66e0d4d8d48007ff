"""Who asks and from where, as the core's rules read it: the server, the caller's role ids, and
whether the place is private."""

from __future__ import annotations

import discord


def private_to(channel: object) -> str:
    """Where what is taught stays, as in a DM ('' for the whole server): a private thread's id, or the
    id of a channel @everyone cannot view (a thread inside one included), as Slack keeps a private
    channel's. A thread whose channel is not known is kept to that channel: unsure means private."""
    if isinstance(channel, discord.Thread):
        if channel.type is discord.ChannelType.private_thread:
            return str(channel.id)
        if channel.parent is None:
            return str(channel.parent_id)
        channel = channel.parent
    hidden = (
        isinstance(channel, discord.abc.GuildChannel)
        and not channel.permissions_for(channel.guild.default_role).view_channel
    )
    return str(channel.id) if hidden else ""


def role_ids(user: discord.User | discord.Member) -> tuple[str, ...]:
    """Role ids only: a name can be copied by anyone in a server of their own."""
    if not isinstance(user, discord.Member):
        return ()
    return tuple(str(r.id) for r in user.roles)


def server_id(guild: discord.Guild | None) -> str:
    """The server a request came from ('' in a DM); the core honours admin roles only in its own."""
    return str(guild.id) if guild is not None else ""
