"""Discord's application (slash) commands, derived from the one declaration in bot/commands.py.

"lora use" becomes /lora use with a typed `version` option; the adapter's `run_command` receives
the command's name and its options by name and hands them to the core.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import discord
from discord import app_commands

from bot.commands import COMMANDS, GROUPS, Command

# Admin commands are hidden from members without Manage Server until a server admin changes it.
ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)

RunCommand = Callable[[discord.Interaction, str, dict[str, Any]], Coroutine[Any, Any, None]]


def add_commands(tree: app_commands.CommandTree, run_command: RunCommand) -> None:
    """Discord's application commands, derived from bot/commands.py: "lora use" is /lora use.

    Admin commands (and groups of admin commands only) are hidden from members without Manage
    Server until a server admin changes it; the core checks admin rights again at run time.
    """
    groups: dict[str, app_commands.Group] = {}
    for command in COMMANDS.values():
        head, _, leaf = command.name.partition(" ")
        if not leaf:
            top = _app_command(command, head, run_command)
            if command.admin:
                top.default_permissions = ADMIN_PERMISSIONS
            tree.add_command(top)
            continue
        if head not in groups:
            admin_only = all(c.admin for c in COMMANDS.values() if c.name.startswith(f"{head} "))
            groups[head] = app_commands.Group(
                name=head, description=GROUPS[head], default_permissions=ADMIN_PERMISSIONS if admin_only else None
            )
            tree.add_command(groups[head])
        groups[head].add_command(_app_command(command, leaf, run_command))


def _app_command(command: Command, name: str, run_command: RunCommand) -> app_commands.Command[Any, ..., None]:
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
    return app_commands.Command(name=name, description=command.help[:100], callback=callback)
