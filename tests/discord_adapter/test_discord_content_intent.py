"""The Discord adapter without the privileged Message Content intent: asked not to request it, or
refused it by the gateway (close 4014), it answers mentions and DMs and says what works."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import discord
import pytest

from bot.core import Core
from tests.discord_adapter.helpers import BotThread, final_reply
from tests.emulators.discord_api import DiscordEmulator

OP_IDENTIFY = 2


def identified_intents(emulator: DiscordEmulator) -> list[discord.Intents]:
    return [discord.Intents._from_value(op["d"]["intents"]) for op in emulator.gateway_ops if op["op"] == OP_IDENTIFY]


def test_without_the_intent_mentions_and_dms_are_answered(
    emulator: DiscordEmulator,
    fast_core: Callable[..., Core],
    start_bot: Callable[..., BotThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = fast_core(reply="Answered without content access.", discord__message_content=False)
    with caplog.at_level(logging.WARNING, logger="adapters.discord_bot"):
        start_bot(core)
    [intents] = identified_intents(emulator)
    assert not intents.message_content and intents.guild_messages, "the privileged intent is not asked for"
    [said] = [r.getMessage() for r in caplog.records if "Message Content" in r.getMessage()]
    assert "mentions, DMs" in said and "slash commands and buttons" in said and "threads" in said

    user = emulator.add_user("nia")
    thread = str(emulator.thread_id)
    mentioned = emulator.send_message(user, f"{emulator.mention()} are you there?", channel_id=thread)
    [answer] = final_reply(emulator, mentioned)
    assert answer["content"] == "Answered without content access."
    dm = emulator.send_message(user, "and in private?", channel_id=emulator.dm_channel_id(user))
    final_reply(emulator, dm)
    # A thread follow-up without a mention reaches the bot with its text withheld: not a question.
    follow = emulator.send_message(user, "a follow-up without a mention", channel_id=thread)
    time.sleep(0.5)
    assert emulator.replies_to(follow["id"]) == [], "no answer, and no 'the message is empty' either"
    assert [e.user_text for e in core.store.exchanges()] == ["are you there?", "and in private?"]


def test_a_refused_intent_falls_back_to_mentions_and_dms(
    emulator: DiscordEmulator,
    fast_core: Callable[..., Core],
    start_bot: Callable[..., BotThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.refuse_message_content = True  # the developer portal's toggle is off
    core = fast_core(reply="Still here.")
    with caplog.at_level(logging.WARNING, logger="adapters.discord_bot"):
        bot = start_bot(core).client
    assert [i.message_content for i in identified_intents(emulator)] == [True, False], "asked, refused, asked without"
    assert not bot.intents.message_content
    [said] = [r.getMessage() for r in caplog.records if "refused the Message Content intent" in r.getMessage()]
    assert "DISCORD_MESSAGE_CONTENT=false" in said and "mentions, DMs" in said
    asked = emulator.send_message(emulator.add_user("omar"), f"{emulator.mention()} hello?")
    [answer] = final_reply(emulator, asked)
    assert answer["content"] == "Still here."
