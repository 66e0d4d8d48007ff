"""The Discord adapter end to end: the real discord.py client over loopback against the emulator.

Each test starts the emulator (REST + gateway) and the bot on its own event loop in a thread,
as `bot run` would, then acts as Discord users and checks what the bot sent and what the core
recorded. The core runs on a fake generator except in the one slow test.

Messages: mentions streamed by editing, DMs, what is ignored, reply chains, threads, long replies
and their splitting, the queue notice. The fixtures are in conftest.py, the helpers in helpers.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import discord

from adapters.discord_bot.client import split_message
from bot.core import Core
from bot.types import ConversationKey
from tests.discord_adapter.helpers import TIMEOUT, BotThread, buttons, final_reply, text_of, token_id
from tests.emulators.discord_api import COMPONENTS_V2, DiscordEmulator, wait_until
from tests.fakes import FakeEngine

# ----------------------------------------------------------------------------- messages


def test_mention_streams_a_reply_by_editing(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    reply = "Streaming works by posting once and then editing the same message as words arrive."
    core = fast_core(reply=reply, delay_s=0.04)
    start_bot(core)
    user = emulator.add_user("alice")
    asked = emulator.send_message(user, f"{emulator.mention()} how does streaming work?")

    [answer] = final_reply(emulator, asked)
    assert answer["content"] == reply
    channel = str(emulator.channel_id)
    posts = emulator.calls_to("POST", rf"/channels/{channel}/messages")
    edits = emulator.calls_to("PATCH", rf"/channels/{channel}/messages/{answer['id']}")
    assert len(posts) == 1, "one message, then edits"
    streamed = posts[0].body["content"]
    assert streamed.endswith(" …") and reply.startswith(streamed.removesuffix(" …")), "the reply so far, still going"
    assert str(posts[0].body["message_reference"]["message_id"]) == asked["id"]
    assert posts[0].body["allowed_mentions"]["parse"] == [], "model output must not ping anyone"
    assert len(edits) >= 2 and edits[-1].body["content"] == reply
    # Throttled: streaming edits keep the interval (the last one, on completion, need not).
    gaps = [b.at - a.at for a, b in zip([posts[0], *edits[:-2]], edits[:-1], strict=True)]
    assert all(gap >= 0.08 for gap in gaps), gaps
    assert emulator.calls_to("POST", rf"/channels/{channel}/typing"), "typing indicator"
    exchange = core.exchange_for_message("discord", answer["id"])
    assert buttons(answer) == [f"vote:{exchange}:up", f"vote:{exchange}:down"]
    assert "components" in edits[-1].body, "the final text and its buttons came in one edit"
    assert not emulator.calls_to("PUT", r"/channels/.+/reactions/.+"), "buttons, not seeded reactions"
    assert core.exchange_for_message("discord", answer["id"]) is not None
    # The bot asked for what it needs and nothing privileged beyond message content.
    identify = next(op["d"] for op in emulator.gateway_ops if op["op"] == 2)
    wanted = discord.Intents._from_value(identify["intents"])
    assert wanted.message_content and wanted.guild_reactions and wanted.dm_messages and not wanted.members


def test_dm_answered_and_unaddressed_messages_ignored(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Hello in private.")
    start_bot(core)
    user = emulator.add_user("bob")
    other_bot = emulator.make_user("otherbot", bot=True)
    emulator.users[other_bot["id"]] = other_bot
    ignored = [
        emulator.send_message(user, "just chatting, not to the bot"),
        emulator.send_message(other_bot, f"{emulator.mention()} bots are ignored"),
        emulator.send_message(user, f"{emulator.mention()} joined", msg_type=7),  # a system message
    ]
    dm = emulator.dm_channel_id(user)
    asked = emulator.send_message(user, "hi, no mention needed here", channel_id=dm)

    [answer] = final_reply(emulator, asked)
    assert answer["channel_id"] == dm and answer["content"] == "Hello in private."
    assert not emulator.calls_to("PUT", r"/channels/.+/reactions/.+"), "no reactions seeded by default"
    time.sleep(0.3)  # the ignored messages came first; give their handlers time to misbehave
    assert [emulator.replies_to(m["id"]) for m in ignored] == [[], [], []]
    assert len(emulator.bot_messages()) == 1


def test_bare_mention_gets_the_cores_message(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core()
    start_bot(core)
    user = emulator.add_user("lou")
    asked = emulator.send_message(user, emulator.mention())
    [answer] = wait_until(lambda: emulator.replies_to(asked["id"]), TIMEOUT, what="the bot's message")
    assert answer["content"] == "⚠️ the message is empty"
    assert core.generation.engine.calls == []  # type: ignore[attr-defined]


def test_reply_chain_continues_the_conversation(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Noted.")
    engine: FakeEngine = core.generation.engine  # type: ignore[assignment]
    bot = start_bot(core)
    user = emulator.add_user("carol")
    first = emulator.send_message(user, f"{emulator.mention()} my favourite fruit is pineapple")
    [answer1] = final_reply(emulator, first)

    # A reply without a mention (ping off) still reaches the bot, with the history.
    second = emulator.send_message(user, "what did I just tell you ?", reply_to=answer1["id"], ping=False)
    [answer2] = final_reply(emulator, second)
    assert token_id("pineapple") in engine.calls[1], "the reply chain's history is in the prompt"

    # A fresh mention is a new conversation.
    third = emulator.send_message(user, f"{emulator.mention()} what did I just tell you ?")
    final_reply(emulator, third)
    assert token_id("pineapple") not in engine.calls[2]

    # After a restart the bot has no memory of its messages: it walks the chain over REST.
    bot.stop()
    start_bot(core)
    fourth = emulator.send_message(user, "and again ?", reply_to=answer2["id"], ping=False)
    final_reply(emulator, fourth)
    assert token_id("pineapple") in engine.calls[3]
    assert emulator.calls_to("GET", rf"/channels/{emulator.channel_id}/messages/\d+")
    chain = ConversationKey("discord", str(emulator.channel_id), first["id"])
    assert core.store.has_history(chain)


def test_thread_is_one_conversation(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Sure.")
    start_bot(core)
    user = emulator.add_user("dave")
    thread = str(emulator.thread_id)
    first = emulator.send_message(user, f"{emulator.mention()} start here", channel_id=thread)
    final_reply(emulator, first)
    # Once the bot talks in a thread, follow-ups there need no mention.
    follow = emulator.send_message(user, "and a follow-up", channel_id=thread)
    [answer] = final_reply(emulator, follow)
    assert answer["channel_id"] == thread
    assert core.store.has_history(ConversationKey("discord", str(emulator.channel_id), thread))


def test_a_long_reply_is_one_layout_message_with_its_buttons(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    paragraph = " ".join(f"sentence{i} has several words in it." for i in range(40))
    reply = paragraph + "\n\n" + paragraph  # ~2,900 characters: over a message's content, within a layout's
    assert 2000 < len(reply) <= 4000
    core = fast_core(reply=reply, max_new_tokens=1000, context_tokens=4096, tuning__discord_stream_interval_s=0.05)
    start_bot(core)
    asked = emulator.send_message(emulator.add_user("erin"), f"{emulator.mention()} tell me everything")

    [answer] = final_reply(emulator, asked)
    assert answer["flags"] & COMPONENTS_V2 and answer["content"] == "", "a Components V2 message carries no content"
    assert text_of(answer) == reply and len(buttons(answer)) == 2, "the whole reply in one message, 👍/👎 under it"
    exchange = core.exchange_for_message("discord", answer["id"])
    assert exchange is not None and buttons(answer)[0] == f"vote:{exchange}:up"
    # It began as a plain message and became a layout once it grew past 2,000 characters.
    [posted] = emulator.calls_to("POST", r"/channels/\d+/messages")
    assert posted.body.get("content") and not int(posted.body.get("flags") or 0) & COMPONENTS_V2
    assert any(int(c.body.get("flags") or 0) & COMPONENTS_V2 for c in emulator.calls_to("PATCH", r"/channels/.+"))
    click = emulator.click(emulator.add_user("fay"), answer["id"], f"vote:{exchange}:up")
    assert "counted" in str(emulator.callback_of(click)["data"]["content"]), "its buttons work"


def test_a_reply_past_a_layouts_4000_characters_continues_in_another_message(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    paragraph = " ".join(f"sentence{i} has several words in it." for i in range(80))  # ~2,900 characters
    reply = "\n\n".join([paragraph] * 2)
    assert len(reply) > 4000
    core = fast_core(reply=reply, max_new_tokens=2000, context_tokens=4096)
    start_bot(core)
    asked = emulator.send_message(emulator.add_user("erin"), f"{emulator.mention()} tell me everything")
    parts = final_reply(emulator, asked, expected_parts=2)
    assert [text_of(p) for p in parts] == [paragraph, paragraph], "cut at the paragraph break"
    assert buttons(parts[0]) == [] and len(buttons(parts[1])) == 2, "👍/👎 once, on the last part"
    exchange = core.exchange_for_message("discord", parts[0]["id"])
    wait_until(lambda: core.exchange_for_message("discord", parts[1]["id"]) == exchange, TIMEOUT,
               what="the second part linked to the exchange")  # fmt: skip


def test_split_message_boundaries() -> None:
    assert split_message("short") == ["short"]
    words = "word " * 500
    parts = split_message(words)
    assert all(len(p) <= 2000 for p in parts) and " ".join(parts).split() == words.split()
    assert split_message("x" * 4500) == ["x" * 2000, "x" * 2000, "x" * 500]
    code = "Here:\n```python\n" + "\n".join(f"    line_{i} = {i}" for i in range(200)) + "\n```\nDone."
    parts = split_message(code)
    assert len(parts) > 1 and all(len(p) <= 2000 for p in parts)
    assert parts[0].endswith("\n```") and parts[1].startswith("```python\n    line_"), "fence closed and reopened"
    assert all(p.count("```") % 2 == 0 for p in parts)


def test_queued_request_says_so(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="one two three four five", delay_s=0.3)  # the first answer takes 1.5 s
    start_bot(core)
    first_user, second_user = emulator.add_user("fay"), emulator.add_user("gus")
    first = emulator.send_message(first_user, f"{emulator.mention()} first")
    wait_until(lambda: emulator.replies_to(first["id"]), TIMEOUT, what="the first answer to start")
    second = emulator.send_message(second_user, f"{emulator.mention()} second")
    [answer] = final_reply(emulator, second)
    posted = next(
        c
        for c in emulator.calls_to("POST", r"/channels/\d+/messages")
        if str(c.body["message_reference"]["message_id"]) == second["id"]
    )
    assert posted.body["content"].startswith("⏳"), posted.body["content"]
    assert answer["content"] == "one two three four five"


def test_a_masked_link_in_a_reply_shows_its_address(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    """Discord renders `[Sign in](<https://...>)` as a masked link: the reply shows the address."""
    core = fast_core(reply="Please [Sign in](<https://evil.example/login>) to reset it.", delay_s=0.02)
    start_bot(core)
    asked = emulator.send_message(emulator.add_user("alice"), f"{emulator.mention()} how do I reset my password?")
    [answer] = final_reply(emulator, asked)
    assert answer["content"] == "Please [Sign in]\u2060(<https://evil.example/login>) to reset it."
    channel = str(emulator.channel_id)
    sent = emulator.calls_to("POST", rf"/channels/{channel}/messages") + emulator.calls_to(
        "PATCH", rf"/channels/{channel}/messages/.+"
    )
    assert sent and all("](" not in call.body.get("content", "") for call in sent)


def test_requests_are_checked_against_discords_openapi_description(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    """The emulator checks every JSON body the bot sends (the fixture fails on a violation); here, that
    the check runs and refuses what Discord's description refuses."""
    from tests.emulators.discord_spec import SpecCheck

    start_bot(fast_core(reply="Checked."))
    asked = emulator.send_message(emulator.add_user("vera"), f"{emulator.mention()} are you valid?")
    final_reply(emulator, asked)
    assert emulator.spec.checked >= 3 and not emulator.spec.violations  # the post, its edits, the commands
    check = SpecCheck()
    check.check("POST", "/channels/1/messages", {"content": "fine", "allowed_mentions": {"parse": []}})
    assert not check.violations
    check.check("POST", "/channels/1/messages", {"content": 42, "allowed_mentions": {"parse": ["nobody"]}})
    check.check("PATCH", "/webhooks/1/token/messages/@original", {"flags": "not a number"})
    assert len(check.violations) >= 3, check.violations
