"""DISCORD_ALLOWED_GUILDS: the bot leaves a server not listed; until it is gone it answers nothing
there, runs no command (and says so: nothing waits on "thinking…") and stores nothing. A DM, which
has no server, is answered for members of a listed server only (DISCORD_DM_OPEN: for anyone)."""

from __future__ import annotations

import time
from collections.abc import Callable

from adapters.discord_bot.invited import NOT_A_MEMBER
from bot.core import Core
from tests.discord_adapter.helpers import BotThread, final_reply
from tests.emulators.discord_api import DiscordEmulator, wait_until


def test_a_server_not_listed_gets_nothing_while_a_dm_is_answered(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Hello in private.", discord__allowed_guilds="123456789", discord__dm_open=True)
    start_bot(core)
    wait_until(lambda: emulator.left_guilds == [str(emulator.guild_id)], what="the bot leaving the server")
    user = emulator.add_user("mallory")
    asked = emulator.send_message(user, f"{emulator.mention()} what is the wifi password?")
    interaction = emulator.invoke_command(user, "help")
    dm = emulator.dm_channel_id(user)
    answered = emulator.send_message(user, "hi, in a DM", channel_id=dm)

    [answer] = final_reply(emulator, answered)
    assert answer["content"] == "Hello in private."
    time.sleep(0.5)  # the server's message and command came first: give them time to misbehave
    assert emulator.replies_to(asked["id"]) == []
    [followup] = wait_until(lambda: emulator.calls_to("POST", rf"/webhooks/{emulator.app_id}/{interaction['token']}"))
    assert followup.body["content"] == "Not done: a workspace the bot is not invited to.", "said, not run"
    assert [e.user_text for e in core.store.exchanges()] == ["hi, in a DM"], "nothing stored from the server"


def test_dms_are_answered_for_members_of_a_listed_server_only(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Hello, member.", discord__allowed_guilds=str(emulator.guild_id))
    start_bot(core)
    member, stranger = emulator.add_user("ann"), emulator.add_user("mallory", member=False)
    ignored = emulator.send_message(stranger, "hi, in a DM", channel_id=emulator.dm_channel_id(stranger))
    interaction = emulator.invoke_command(stranger, "help", channel_id=emulator.dm_channel_id(stranger))
    asked = emulator.send_message(member, "hi, in a DM", channel_id=emulator.dm_channel_id(member))
    [answer] = final_reply(emulator, asked)
    assert answer["content"] == "Hello, member."
    [followup] = wait_until(lambda: emulator.calls_to("POST", rf"/webhooks/{emulator.app_id}/{interaction['token']}"))
    assert followup.body["content"] == NOT_A_MEMBER
    assert emulator.replies_to(ignored["id"]) == [] and emulator.left_guilds == []
    assert [e.user_id for e in core.store.exchanges()] == [member["id"]]


def test_a_listed_server_is_served(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Welcome.", discord__allowed_guilds=f"123456789,{emulator.guild_id}")
    start_bot(core)
    asked = emulator.send_message(emulator.add_user("ann"), f"{emulator.mention()} hello?")
    [answer] = final_reply(emulator, asked)
    assert answer["content"] == "Welcome."
