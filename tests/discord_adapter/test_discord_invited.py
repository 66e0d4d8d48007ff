"""DISCORD_ALLOWED_GUILDS: in a server not listed the bot answers nothing, runs no command and
stores nothing; DMs, which have no server, are still answered."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.core import Core
from tests.discord_adapter.helpers import BotThread, final_reply
from tests.emulators.discord_api import DiscordEmulator


def test_a_server_not_listed_gets_nothing_while_a_dm_is_answered(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Hello in private.", discord__allowed_guilds="123456789")
    start_bot(core)
    user = emulator.add_user("mallory")
    asked = emulator.send_message(user, f"{emulator.mention()} what is the wifi password?")
    interaction = emulator.invoke_command(user, "help")
    dm = emulator.dm_channel_id(user)
    answered = emulator.send_message(user, "hi, in a DM", channel_id=dm)

    [answer] = final_reply(emulator, answered)
    assert answer["content"] == "Hello in private."
    time.sleep(0.5)  # the server's message and command came first: give them time to misbehave
    assert emulator.replies_to(asked["id"]) == []
    followups = emulator.calls_to("POST", rf"/webhooks/{emulator.app_id}/{interaction['token']}")
    assert followups == [], "the command ran nothing, not even help"
    assert [e.user_text for e in core.store.exchanges()] == ["hi, in a DM"], "nothing stored from the server"


def test_a_listed_server_is_served(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Welcome.", discord__allowed_guilds=f"123456789,{emulator.guild_id}")
    start_bot(core)
    asked = emulator.send_message(emulator.add_user("ann"), f"{emulator.mention()} hello?")
    [answer] = final_reply(emulator, asked)
    assert answer["content"] == "Welcome."
