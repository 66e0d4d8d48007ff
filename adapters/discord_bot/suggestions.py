"""What autocomplete offers for the admin commands' arguments: LoRA versions (`lora use`), newest
first with their status, and pending correction ids (`feedback accept|reject`) labelled with
their question. Only admins see choices: the names of versions and the questions people asked
are not for everyone, even in a menu (the core still refuses the command itself to others)."""

from __future__ import annotations

import asyncio
import textwrap
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from adapters.discord_bot import PLATFORM
from adapters.discord_bot.caller import role_ids, server_id

if TYPE_CHECKING:
    from bot.core import Core

MAX_CHOICES = 25  # Discord shows at most 25 choices
CHOICE_CHARS = 100  # a choice's name and value are 1-100 characters


def options(core: Core, argument: str) -> list[tuple[str, str]]:
    """(value, label) pairs for an argument, in the order they are offered."""
    if argument == "version":
        versions = core.registry.versions() if core.registry is not None else []
        return [(v.version, f"{v.version} ({v.status})") for v in reversed(versions)]  # oldest first there
    if argument == "correction_id":
        return [(c.id, f"{c.id}: {c.question}") for c in core.pending_corrections()]
    return []


def choices(core: Core, argument: str, current: str) -> list[app_commands.Choice[str]]:
    typed = current.strip().lower()
    found = [(value, label) for value, label in options(core, argument) if typed in label.lower()]
    return [
        app_commands.Choice(name=textwrap.shorten(label, CHOICE_CHARS, placeholder="…"), value=value)
        for value, label in found[:MAX_CHOICES]
    ]


async def suggest(
    core: Core, interaction: discord.Interaction, argument: str, current: str
) -> list[app_commands.Choice[str]]:
    """The choices for `interaction`'s caller: none for anyone who is not an admin here."""
    user = interaction.user
    if not core.is_admin(PLATFORM, str(user.id), role_ids(user), server_id(interaction.guild)):
        return []
    # Off the event loop: the registry reads manifests, the store queries the database.
    return await asyncio.to_thread(choices, core, argument, current)
