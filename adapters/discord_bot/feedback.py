"""Feedback buttons under every finished answer, and the correction modal a 👎 opens.

The buttons are persistent dynamic items: a button's custom id names its exchange
(`vote:<exchange id>:up`), so a click counts without any state in this process, after a restart
too (`Client.add_dynamic_items(VoteButton)`). A click is a `Vote` for `Core.handle`, counted as a
reaction is; the voter is told privately. Discord allows one initial response per interaction
and a modal is one: a 👎 opens "What would be right?" first, then records the vote, whose
thanks comes when it is submitted (a dismissed modal says nothing, and Discord never tells). The
modal asks why (a radio group: the reason is stored with the vote) and, optionally, the right answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import discord
from discord import ui

from adapters.discord_bot import PLATFORM
from adapters.discord_bot.caller import private_to, role_ids, server_id
from adapters.discord_bot.conversations import of_interaction
from adapters.text import plain_links
from bot.types import VOTE_REASONS, CommandResult, Correction, Ignored, Vote, VoteResult

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

VOTE_ID = r"vote:(?P<exchange>[0-9A-Za-z_-]{1,80}):(?P<value>up|down)"  # a custom id: 100 characters at most
VALUES = {"up": 1, "down": -1}
EMOJI = {1: "👍", -1: "👎"}
TEXT_INPUT_MAX = 4000  # Discord's limit for a text input's value
# Discord never says that a modal was dismissed: forget it once its interaction token (15 min) is gone.
MODAL_TIMEOUT_S = 15 * 60
# discord.py keeps each open modal until it is submitted or times out: at most this many, the oldest
# forgotten first (its late submission then fails on Discord's side, and changes nothing here).
MAX_OPEN_MODALS = 1000
_open_modals: deque[CorrectionModal] = deque()
SORRY = "Sorry, that did not work; the logs say why."


class Host(Protocol):
    """What the buttons need of the client (adapters/discord_bot/client.py's DiscordBot)."""

    core: Core


def thanks(value: int) -> str:
    return f"Thanks — counted {EMOJI[value]}."


class VoteButton(ui.DynamicItem[ui.Button[ui.View]], template=VOTE_ID):
    def __init__(self, exchange_id: str, value: int) -> None:
        name = "up" if value > 0 else "down"
        button: ui.Button[ui.View] = ui.Button(
            style=discord.ButtonStyle.secondary, emoji=EMOJI[value], custom_id=f"vote:{exchange_id}:{name}"
        )
        super().__init__(button)
        self.exchange_id, self.value = exchange_id, value

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: ui.Item[Any], match: re.Match[str], /
    ) -> VoteButton:
        return cls(match["exchange"], VALUES[match["value"]])

    async def callback(self, interaction: discord.Interaction) -> None:
        await vote_clicked(interaction, self.exchange_id, self.value)


def feedback_view(exchange_id: str) -> ui.View:
    """👍 and 👎 for one exchange. Fully dynamic, so discord.py keeps nothing per message."""
    view = ui.View(timeout=None)
    view.add_item(VoteButton(exchange_id, 1))
    view.add_item(VoteButton(exchange_id, -1))
    return view


async def seed_reactions(message: discord.Message, emoji: Sequence[str]) -> None:
    """`discord.seed_reactions`: 👍 and 👎 under the answer too, for those who vote by reaction."""
    for name in emoji:
        try:
            await message.add_reaction(name)
        except discord.HTTPException as exc:  # e.g. no Add Reactions permission here
            log.warning("could not add %s to message %s: %s", name, message.id, exc)
            return


class CorrectionModal(ui.Modal, title="What would be right?"):
    def __init__(self, exchange_id: str, max_chars: int) -> None:
        super().__init__(timeout=MODAL_TIMEOUT_S)  # its custom id is random: one per click
        _open_modals.append(self)
        while len(_open_modals) > MAX_OPEN_MODALS:
            _open_modals.popleft().stop()
        self.exchange_id = exchange_id
        self.reason: ui.RadioGroup[CorrectionModal] = ui.RadioGroup(
            options=[discord.RadioGroupOption(label=label, value=value) for value, label in VOTE_REASONS.items()]
        )
        self.add_item(ui.Label(text="What is wrong with it?", component=self.reason))
        self.answer: ui.TextInput[CorrectionModal] = ui.TextInput(
            style=discord.TextStyle.paragraph, max_length=min(max_chars, TEXT_INPUT_MAX), required=False
        )
        self.add_item(ui.Label(text="The right answer", description="Optional", component=self.answer))

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        self._forget()
        await correction_submitted(interaction, self.exchange_id, self.answer.value, self.reason.value)

    async def on_timeout(self) -> None:
        self._forget()

    def _forget(self) -> None:
        with contextlib.suppress(ValueError):
            _open_modals.remove(self)


def _core(interaction: discord.Interaction) -> Core:
    return cast(Host, interaction.client).core


async def vote_clicked(interaction: discord.Interaction, exchange_id: str, value: int) -> None:
    """Count the click (the core's vote rules), then thank the voter or, for 👎, ask what is right.

    A modal must be the first response, within Discord's 3 seconds: a 👎 opens it at once and its
    vote is written after (a slow write would otherwise show "interaction failed" though it counted).
    """
    core = _core(interaction)
    clicked = str(interaction.message.id) if interaction.message is not None else ""
    vote = Vote(PLATFORM, exchange_id, str(interaction.user.id), value, event_id=f"interaction:{interaction.id}",
                workspace=server_id(interaction.guild), message_ref=clicked)  # fmt: skip
    # Not in a server the bot serves: no modal, and the vote is ignored below like any click there.
    modal = value < 0 and core.rules.invited(PLATFORM, vote.workspace)
    if modal:
        await interaction.response.send_modal(CorrectionModal(exchange_id, core.settings.max_correction_chars))
    try:
        # Off the event loop, on its default executor, which answers never fill (client.py `_core`).
        outcome = await asyncio.to_thread(core.handle, vote)
    except Exception:
        log.exception("counting the vote of %s on %s failed", interaction.user.id, exchange_id)
        if not modal:
            await interaction.response.send_message(SORRY, ephemeral=True)
        return
    log.info("button vote on %s: %s", exchange_id, outcome)
    if modal:
        return  # answered already, by the modal; its submission says what was kept
    if not isinstance(outcome, VoteResult):
        reason = outcome.reason if isinstance(outcome, Ignored) else "not a vote"
        await interaction.response.send_message(plain_links(f"Not counted: {reason}."), ephemeral=True)
    else:
        await interaction.response.send_message(thanks(value), ephemeral=True)


async def correction_submitted(
    interaction: discord.Interaction, exchange_id: str, text: str, reason: str | None = None
) -> None:
    """The modal's reason, on the user's 👎, and its text as a correction, checked by the core as a
    `correct:` reply is: sent from where the 👎 was clicked, so a button reached from another server
    or DM corrects nothing."""
    core = _core(interaction)
    user = str(interaction.user.id)
    noted = ""
    if reason:
        vote = Vote(PLATFORM, exchange_id, user, -1, f"reason:{interaction.id}", server_id(interaction.guild),
                    reason=reason)  # fmt: skip
        voted = await asyncio.to_thread(core.handle, vote)
        noted = f" Noted: {VOTE_REASONS.get(reason, reason).lower()}." if isinstance(voted, VoteResult) else ""
    if not text.strip():
        await interaction.response.send_message(thanks(-1) + noted, ephemeral=True)
        return
    correction = Correction(
        PLATFORM, exchange_id, user, text.strip(), of_interaction(interaction), server_id(interaction.guild),
        role_ids(interaction.user), is_dm=interaction.guild is None, private_to=private_to(interaction.channel),
    )  # fmt: skip
    try:
        outcome = await asyncio.to_thread(core.handle, correction)
    except Exception:
        log.exception("the correction of %s by %s failed", exchange_id, user)
        await interaction.response.send_message(SORRY, ephemeral=True)
        return
    if isinstance(outcome, CommandResult) and outcome.ok:
        said = f"{thanks(-1)}{noted} {outcome.text}"
    else:
        why = outcome.text if isinstance(outcome, CommandResult) else getattr(outcome, "reason", "not a correction")
        said = f"{thanks(-1)}{noted} The correction was not kept: {why}"
    await interaction.response.send_message(plain_links(said), ephemeral=True)  # it may quote the correction
