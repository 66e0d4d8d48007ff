"""Discord's application (slash) commands, derived from the one declaration in bot/commands.py.

"lora use" becomes /lora use with a typed `version` option; the adapter's `run_command` receives
the command's name and its options by name and hands them to the core. The arguments named in
`SUGGESTED` get autocomplete (adapters/discord_bot/suggestions.py says what is offered).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import discord
from discord import app_commands

from bot.commands import COMMANDS, GROUPS, Command

# Admin commands are hidden from members without Manage Server until a server admin changes it.
ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)
# /help and /reset work wherever someone talks to the bot: servers, its DMs, group DMs.
EVERYWHERE = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True)
SUGGESTED = ("version", "correction_id")  # arguments whose values Discord autocompletes

RunCommand = Callable[[discord.Interaction, str, dict[str, Any]], Coroutine[Any, Any, None]]
# suggest(interaction, argument name, what was typed so far) -> up to 25 choices
Suggest = Callable[[discord.Interaction, str, str], Awaitable[list[app_commands.Choice[str]]]]


async def _nothing(interaction: discord.Interaction, name: str, current: str) -> list[app_commands.Choice[str]]:
    return []


def add_commands(
    tree: app_commands.CommandTree,
    run_command: RunCommand,
    suggest: Suggest = _nothing,
    admin_guild: discord.abc.Snowflake | None = None,
) -> None:
    """Discord's application commands, derived from bot/commands.py: "lora use" is /lora use.

    Admin commands (and groups of admin commands only) are hidden from members without Manage
    Server until a server admin changes it; the core checks admin rights again at run time. With
    `admin_guild` (DISCORD_GUILD_ID) they are that server's commands only, while the others stay
    global: a guild's commands never show in DMs, and /reset is promised there. A command is
    registered in one place only, since Discord lists a guild and a global one of a name twice.
    """
    groups: dict[str, app_commands.Group] = {}
    for command in COMMANDS.values():
        head, _, leaf = command.name.partition(" ")
        if not leaf:
            top = _app_command(command, head, run_command, suggest)
            if command.admin:
                top.default_permissions = ADMIN_PERMISSIONS
            else:
                top.allowed_contexts = EVERYWHERE
            tree.add_command(top, guild=admin_guild if command.admin else None)
            continue
        if head not in groups:
            admin_only = all(c.admin for c in COMMANDS.values() if c.name.startswith(f"{head} "))
            groups[head] = app_commands.Group(
                name=head,
                description=GROUPS[head],
                default_permissions=ADMIN_PERMISSIONS if admin_only else None,
                allowed_contexts=None if admin_only else EVERYWHERE,
            )
            tree.add_command(groups[head], guild=admin_guild if admin_only else None)
        groups[head].add_command(_app_command(command, leaf, run_command, suggest))


def _app_command(
    command: Command, name: str, run_command: RunCommand, suggest: Suggest
) -> app_commands.Command[Any, ..., None]:
    async def callback(interaction: discord.Interaction, **options: Any) -> None:
        await run_command(interaction, command.name, options)

    # discord.py reads a command's options from its callback's signature: give it the declared ones.
    parameters = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [
        # A default makes the option optional in Discord; None reaches the core as "left out".
        inspect.Parameter(a.name, inspect.Parameter.KEYWORD_ONLY, annotation=a.type,
                          default=None if a.optional else inspect.Parameter.empty)
        for a in command.args
    ]  # fmt: skip
    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    callback.__discord_app_commands_param_description__ = {a.name: a.help for a in command.args}  # type: ignore[attr-defined]
    app_command = app_commands.Command(name=name, description=command.help[:100], callback=callback)
    for arg in command.args:
        if arg.name in SUGGESTED:
            app_command.autocomplete(arg.name)(_suggester(suggest, arg.name))
    return app_command


def _suggester(suggest: Suggest, name: str) -> Callable[..., Awaitable[list[app_commands.Choice[str]]]]:
    # discord.py wants exactly (interaction, current): bind the argument's name here.
    async def choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await suggest(interaction, name, current)

    return choices
