"""What a private thread teaches stays in it, and a forwarded message is not a reply: a forward is a
copy of a message from anywhere (another channel, another server), so it must not make the bot
answer, nor carry a correction to the forwarded answer."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.core import Core
from bot.types import dm_scope
from tests.discord_adapter.helpers import BotThread, final_reply
from tests.emulators.discord_api import DiscordEmulator, wait_until


def test_a_vote_in_a_private_thread_teaches_that_thread_only(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="The secret project ships in May.")
    start_bot(core)
    asker, voter = emulator.add_user("ann"), emulator.add_user("bob")
    private = str(emulator.private_thread_id)
    asked = emulator.send_message(asker, f"{emulator.mention()} when does the project ship?", channel_id=private)
    [answer] = final_reply(emulator, asked)
    emulator.react(answer["id"], voter, "👍")

    [example] = wait_until(lambda: core.examples.list(label="good"), what="the vote's example")
    assert example.scope == dm_scope("discord", private), "not the server's scope, which every channel sees"
    [exchange] = core.store.exchanges()
    assert exchange.scope == dm_scope("discord", private)


def test_a_forwarded_answer_is_neither_answered_nor_corrected(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Lunch is at noon.")
    start_bot(core)
    user = emulator.add_user("carol")
    asked = emulator.send_message(user, f"{emulator.mention()} when is lunch?")
    [answer] = final_reply(emulator, asked)

    dm = emulator.dm_channel_id(user)
    forwarded = emulator.send_message(user, "", channel_id=str(emulator.thread_id), forward_of=answer["id"])
    answered_dm = emulator.send_message(user, "and now in a DM", channel_id=dm)  # a probe: the bot is alive
    final_reply(emulator, answered_dm)
    time.sleep(0.3)  # the forward came first: give it time to misbehave
    assert emulator.replies_to(forwarded["id"]) == [], "a forward of the bot's message is not a reply to it"
    assert [e.user_text for e in core.store.exchanges()] == ["when is lunch?", "and now in a DM"]


def test_a_channel_everyone_cannot_view_and_its_threads_teach_that_channel_only(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    """A mods-only channel (@everyone denied View Channel) keeps what is taught there, as Slack keeps
    a private channel's; a public thread inside it too. #general neither sees it nor is narrowed."""
    core = fast_core(reply="The admin password rotates on Fridays.")
    start_bot(core)
    mod, voter, outsider = emulator.add_user("mia"), emulator.add_user("max"), emulator.add_user("olga")
    mods = str(emulator.private_channel_id)
    asking = {mods: "when does the password rotate?", str(emulator.private_channel_thread_id): "which day is rotation?"}
    for channel, question in asking.items():
        asked = emulator.send_message(mod, f"{emulator.mention()} {question}", channel_id=channel)
        [answer] = final_reply(emulator, asked)
        emulator.react(answer["id"], voter, "👍")
    examples = wait_until(lambda: len(core.examples.list(label="good")) == 2 and core.examples.list(label="good"),
                          what="both votes' examples")  # fmt: skip
    assert {e.scope for e in examples} == {dm_scope("discord", mods)}, "the channel's scope, not the server's"
    asked = emulator.send_message(outsider, f"{emulator.mention()} when does the password rotate?")
    final_reply(emulator, asked)
    general = [e for e in core.store.exchanges() if e.user_id == outsider["id"]]
    assert general and general[0].scope == f"discord:{emulator.guild_id}" and not general[0].example_ids
