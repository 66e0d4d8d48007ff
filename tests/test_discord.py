"""The Discord adapter end to end: the real discord.py client over loopback against the emulator.

Each test starts the emulator (REST + gateway) and the bot on its own event loop in a thread,
as `bot run` would, then acts as Discord users and checks what the bot sent and what the core
recorded. The core runs on a fake generator except in the one slow test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import discord
import pytest

from adapters.discord_bot import DiscordBot, build_client, split_message
from bot.core import Core
from bot.types import CommandResult, ConversationKey, Incoming
from tests.emulators.discord_api import DiscordEmulator, wait_until
from tests.fakes import FakeBackend, FakeTokenizer

ADMIN_ID = "111"
TIMEOUT = 20.0  # generous: CI machines have 2 busy cores


class BotThread:
    """Runs a DiscordBot on its own event loop in a thread, as `bot run` runs it in the main one."""

    def __init__(self, client: DiscordBot, token: str) -> None:
        self.client = client
        self.token = token
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, name="discord-bot", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            running = asyncio.create_task(self.client.start(self.token))
            stopping = asyncio.create_task(self._stop.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            await self.client.close()
            stopping.cancel()
            await running  # re-raises what made the client stop, if anything

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the test through `error`
            self.error = exc

    def start(self) -> None:
        self.thread.start()
        wait_until(lambda: self.client.is_ready() or self.error, TIMEOUT, what="the bot to be ready")
        if self.error:
            raise self.error

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the bot did not stop"
        if self.error:
            raise self.error


@pytest.fixture
def emulator() -> Iterator[DiscordEmulator]:
    with DiscordEmulator() as emu:
        yield emu


@pytest.fixture
def fast_core(make_core: Callable[..., Core], emulator: DiscordEmulator) -> Callable[..., Core]:
    """A core on the fake generator, configured to talk to the emulator."""

    def factory(
        reply: str = "This is a test reply.",
        delay_s: float = 0.0,
        gate: threading.Event | None = None,
        **overrides: Any,
    ) -> Core:
        overrides.setdefault("discord__stream_interval_s", 0.1)
        overrides.setdefault("discord__guild_id", int(emulator.guild_id))
        return make_core(
            FakeBackend(reply=reply, delay_s=delay_s, gate=gate),
            admins=(f"discord:{ADMIN_ID}",),
            discord__api_url=emulator.api_url,
            discord__gateway_url=emulator.gateway_url,
            **overrides,
        )

    return factory


@pytest.fixture
def start_bot(emulator: DiscordEmulator) -> Iterator[Callable[..., BotThread]]:
    """start_bot(core, settings=None, **client_options) -> a running bot, connected and ready."""
    running: list[BotThread] = []

    def start(core: Core, settings: Any = None, **options: Any) -> BotThread:
        options.setdefault("guild_ready_timeout", 0.1)  # READY -> ready without the 2 s wait
        runner = BotThread(build_client(core, settings, **options), emulator.token)
        running.append(runner)
        runner.start()
        return runner

    yield start
    for runner in running:
        runner.stop()


def final_reply(
    emulator: DiscordEmulator, user_message: dict[str, Any], expected_parts: int = 1, seeded: bool = True
) -> list[dict[str, Any]]:
    """Wait until the bot's answer to `user_message` is complete (its 👍/👎 seeded) and return it."""

    def done() -> list[dict[str, Any]] | None:
        parts = emulator.replies_to(user_message["id"])
        if len(parts) < expected_parts:
            return None
        if seeded and len(parts[-1]["reactions"]) < 2:
            return None
        if any(part["content"].endswith(" …") or part["content"].startswith("⏳") for part in parts):
            return None  # still being written
        return parts

    return wait_until(done, TIMEOUT, what=f"the answer to {user_message['content']!r}")


def token_id(word: str) -> int:
    return FakeTokenizer()(word)["input_ids"][0]


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
    reactions = emulator.calls_to("PUT", rf"/channels/{channel}/messages/{answer['id']}/reactions/.+/@me")
    assert [c.path.split("/")[-2] for c in reactions] == ["👍", "👎"]
    assert core.exchange_for_message("discord", answer["id"]) is not None
    # The bot asked for what it needs and nothing privileged beyond message content.
    identify = next(op["d"] for op in emulator.gateway_ops if op["op"] == 2)
    wanted = discord.Intents._from_value(identify["intents"])
    assert wanted.message_content and wanted.guild_reactions and wanted.dm_messages and not wanted.members


def test_dm_answered_and_unaddressed_messages_ignored(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Hello in private.", discord__seed_reactions=False)
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

    [answer] = final_reply(emulator, asked, seeded=False)
    assert answer["channel_id"] == dm and answer["content"] == "Hello in private."
    assert not emulator.calls_to("PUT", r"/channels/.+/reactions/.+"), "seeding was turned off"
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
    assert core.generation.backend.calls == []  # type: ignore[attr-defined]


def test_reply_chain_continues_the_conversation(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Noted.")
    backend: FakeBackend = core.generation.backend  # type: ignore[assignment]
    bot = start_bot(core)
    user = emulator.add_user("carol")
    first = emulator.send_message(user, f"{emulator.mention()} my favourite fruit is pineapple")
    [answer1] = final_reply(emulator, first)

    # A reply without a mention (ping off) still reaches the bot, with the history.
    second = emulator.send_message(user, "what did I just tell you ?", reply_to=answer1["id"], ping=False)
    [answer2] = final_reply(emulator, second)
    assert token_id("pineapple") in backend.calls[1], "the reply chain's history is in the prompt"

    # A fresh mention is a new conversation.
    third = emulator.send_message(user, f"{emulator.mention()} what did I just tell you ?")
    final_reply(emulator, third)
    assert token_id("pineapple") not in backend.calls[2]

    # After a restart the bot has no memory of its messages: it walks the chain over REST.
    bot.stop()
    start_bot(core)
    fourth = emulator.send_message(user, "and again ?", reply_to=answer2["id"], ping=False)
    final_reply(emulator, fourth)
    assert token_id("pineapple") in backend.calls[3]
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


def test_long_reply_is_split_into_linked_messages(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    paragraph = " ".join(f"sentence{i} has several words in it." for i in range(40))
    reply = paragraph + "\n\n" + paragraph  # ~2,900 characters with one paragraph break
    assert len(reply) > 2000
    core = fast_core(reply=reply, max_new_tokens=1000, context_tokens=4096)
    start_bot(core)
    user = emulator.add_user("erin")
    asked = emulator.send_message(user, f"{emulator.mention()} tell me everything")

    parts = final_reply(emulator, asked, expected_parts=2)
    assert len(parts) == 2
    assert [p["content"] for p in parts] == [paragraph, paragraph], "cut at the paragraph break"
    exchange = core.exchange_for_message("discord", parts[0]["id"])
    assert exchange is not None and core.exchange_for_message("discord", parts[1]["id"]) == exchange
    assert parts[0]["reactions"] == [] and len(parts[1]["reactions"]) == 2, "👍/👎 once, on the last part"
    assert all(len(c.body["content"]) <= 2000 for c in emulator.calls_to("PATCH", r"/channels/.+"))


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


def test_reaction_votes_on_uncached_message_and_retracts(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Paris is the capital of France.")
    bot = start_bot(core, max_messages=None).client  # no message cache: only raw events count
    alice, bob = emulator.add_user("alice"), emulator.add_user("bob")
    asked = emulator.send_message(alice, f"{emulator.mention()} capital of France?")
    [answer] = final_reply(emulator, asked)
    assert not bot.cached_messages
    exchange = core.exchange_for_message("discord", answer["id"])
    assert exchange is not None
    assert core.store.score(exchange) == 0, "the bot's own seeded reactions are not votes"

    emulator.react(answer["id"], alice, "👍")
    wait_until(lambda: core.store.score(exchange) == 1, TIMEOUT, what="alice's vote")
    emulator.react(answer["id"], bob, "👍🏽")  # a skin tone is still a thumbs up
    wait_until(lambda: core.store.score(exchange) == 2, TIMEOUT, what="bob's vote")
    emulator.react(answer["id"], alice, "👍", add=False)
    wait_until(lambda: core.store.score(exchange) == 1, TIMEOUT, what="alice's retraction")
    emulator.react(answer["id"], alice, "🎉")  # not a vote emoji
    emulator.react(answer["id"], bob, "👍🏽", add=False)
    wait_until(lambda: core.store.score(exchange) == 0, TIMEOUT, what="bob's retraction")


def test_correction_reply(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="The office opens at 10.")
    start_bot(core)
    user = emulator.add_user("hana")
    asked = emulator.send_message(user, f"{emulator.mention()} when does the office open?")
    [answer] = final_reply(emulator, asked)
    fix = emulator.send_message(user, "correct: The office opens at 9.", reply_to=answer["id"], ping=False)
    [ack] = wait_until(lambda: emulator.replies_to(fix["id"]), TIMEOUT, what="the correction's acknowledgement")
    assert "review" in ack["content"]
    [pending] = core.store.corrections("pending")
    assert pending.answer == "The office opens at 9."
    assert len(core.generation.backend.calls) == 1, "a correction is not a question"  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- slash commands


def command_spy(core: Core) -> list[tuple[str, dict[str, Any] | None]]:
    """Record the commands (name, typed options) the adapter hands the core, and still run them."""
    calls: list[tuple[str, dict[str, Any] | None]] = []
    real = core.handle

    def spy(event: Any) -> Any:
        if isinstance(event, Incoming) and event.command is not None:
            calls.append((event.command, dict(event.command_args) if event.command_args is not None else None))
        return real(event)

    core.handle = spy  # type: ignore[method-assign]
    return calls


def followups(emulator: DiscordEmulator, interaction: dict[str, Any], count: int = 1) -> list[Any]:
    return wait_until(
        lambda: (
            (calls := emulator.calls_to("POST", rf"/webhooks/{emulator.app_id}/{interaction['token']}"))
            and len(calls) >= count
            and calls
        ),
        TIMEOUT,
        what=f"the follow-up to /{interaction['data']['name']}",
    )


def test_slash_commands_defer_then_follow_up(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core()
    texts = command_spy(core)
    start_bot(core)
    admin = emulator.add_user("admin", user_id=ADMIN_ID)

    # Synced to the configured guild, admin commands hidden by default.
    [sync] = emulator.calls_to("PUT", rf"/applications/{emulator.app_id}/guilds/{emulator.guild_id}/commands")
    synced = {c["name"]: c for c in sync.body}
    assert set(synced) == {"help", "reset", "status", "retrain", "teach", "lora", "feedback"}
    manage_guild = str(discord.Permissions(manage_guild=True).value)
    assert all(
        str(synced[n]["default_member_permissions"]) == manage_guild
        for n in ("status", "retrain", "teach", "lora", "feedback")
    )
    assert synced["help"]["default_member_permissions"] is None
    assert {o["name"] for o in synced["lora"]["options"]} == {"list", "use", "rollback"}

    interaction = emulator.invoke_command(admin, "status")
    [reply] = followups(emulator, interaction)
    [callback] = emulator.calls_to("POST", rf"/interactions/{interaction['id']}/.+/callback")
    assert callback.body == {"type": 5, "data": {"flags": 64}}, "deferred, ephemeral"
    assert callback.at <= reply.at
    assert "Exchanges:" in reply.body["content"] and reply.body["flags"] & 64
    assert texts == [("status", {})]

    emulator.invoke_command(
        admin, "lora", [{"type": 1, "name": "use", "options": [{"type": 3, "name": "version", "value": "v3"}]}]
    )
    emulator.invoke_command(
        admin,
        "teach",
        [
            {"type": 3, "name": "question", "value": "Who runs the lab => the one in B?"},
            {"type": 3, "name": "answer", "value": "Dr. Lee."},
        ],
    )
    wait_until(lambda: len(texts) == 3, TIMEOUT, what="two more commands")
    assert sorted(texts[1:]) == [
        ("lora use", {"version": "v3"}),
        ("teach", {"question": "Who runs the lab => the one in B?", "answer": "Dr. Lee."}),
    ]
    # Typed options reach the core as they are: a question holding `=>` is stored whole.
    wait_until(lambda: core.store.corrections(), TIMEOUT, what="the taught answer")
    [taught] = core.store.corrections()
    assert (taught.question, taught.answer) == ("Who runs the lab => the one in B?", "Dr. Lee.")


def test_retrain_reports_in_the_channel(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core()
    done: Future[str] = Future()
    # No trainer runs in this fast test: stand in for the core's answer to "retrain".
    real = core.handle
    core.handle = lambda event: (  # type: ignore[method-assign]
        CommandResult("Training started.", ephemeral=False, followup=done)
        if getattr(event, "command", None) == "retrain"
        else real(event)
    )
    start_bot(core)
    admin = emulator.add_user("admin", user_id=ADMIN_ID)
    interaction = emulator.invoke_command(admin, "retrain")
    [started] = followups(emulator, interaction)
    assert started.body["content"] == "Training started."
    channel_posts = rf"/channels/{emulator.channel_id}/messages"
    assert not emulator.calls_to("POST", channel_posts)
    done.set_result("LoRA v2 passed the eval gate and is now serving.")
    [report] = wait_until(lambda: emulator.calls_to("POST", channel_posts), TIMEOUT, what="the retrain report")
    assert report.body["content"] == "LoRA v2 passed the eval gate and is now serving."


def test_non_admin_is_refused(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(discord__guild_id=None)
    texts = command_spy(core)
    start_bot(core)
    [sync] = emulator.calls_to("PUT", r"/applications/\d+/(guilds/\d+/)?commands")
    assert sync.path == f"/applications/{emulator.app_id}/commands", "no guild configured: global"
    member = emulator.add_user("member")
    # A server admin may have made /status visible to everyone: the bot still refuses.
    interaction = emulator.invoke_command(member, "status")
    [refusal] = followups(emulator, interaction)
    assert "admins only" in refusal.body["content"] and refusal.body["flags"] & 64
    assert texts == [("status", {})], "the core refuses it: a platform's hiding is not enough"
    assert core.store.count_exchanges() == 0

    interaction = emulator.invoke_command(member, "help")
    [help_reply] = followups(emulator, interaction)
    assert "help" in help_reply.body["content"] and "retrain" not in help_reply.body["content"]
    assert texts[1:] == [("help", {})]


def test_admin_role_holder_may_run_admin_commands(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(discord__admin_role=str(emulator.admin_role_id))  # the member is not in BOT_ADMINS
    start_bot(core)
    moderator = emulator.add_user("moderator", admin_role=True)
    [reply] = followups(emulator, emulator.invoke_command(moderator, "status"))
    assert "Exchanges:" in reply.body["content"]
    member = emulator.add_user("member")
    [refusal] = followups(emulator, emulator.invoke_command(member, "status"))
    assert "admins only" in refusal.body["content"]


def test_admin_role_counts_only_in_the_configured_server(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    # The bot is configured for another server: the emulator's server is "someone else's", where
    # anyone can create a role with the same id-looking name or even hold a role with that id.
    core = fast_core(discord__admin_role=str(emulator.admin_role_id), discord__guild_id=int(emulator.guild_id) + 1)
    start_bot(core)
    wait_until(lambda: emulator.commands, TIMEOUT, what="the command sync")
    emulator.commands[None] = next(iter(emulator.commands.values()))  # as if synced globally
    moderator = emulator.add_user("moderator", admin_role=True)
    [refusal] = followups(emulator, emulator.invoke_command(moderator, "status"))
    assert "admins only" in refusal.body["content"]


# ----------------------------------------------------------------------------- a flood from one user


def test_a_flood_from_one_user_stalls_no_one_else(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    gate = threading.Event()  # open for the first answer, then closed to hold the flood
    gate.set()
    core = fast_core(reply="Paris.", gate=gate, max_waiting_per_user=6)
    start_bot(core)
    admin, alice, bob = (
        emulator.add_user("admin", user_id=ADMIN_ID),
        emulator.add_user("alice"),
        emulator.add_user("bob"),
    )
    [answer] = final_reply(emulator, emulator.send_message(admin, f"{emulator.mention()} capital of France?"))
    exchange = core.exchange_for_message("discord", answer["id"])
    assert exchange is not None

    gate.clear()
    dm = emulator.dm_channel_id(alice)
    try:
        for i in range(8):  # more than Alice's cap (6)
            emulator.send_message(alice, f"question {i}", channel_id=dm)
        wait_until(lambda: core.generation.queued() >= 4, TIMEOUT, what="Alice's questions to wait")

        emulator.react(answer["id"], bob, "👍")
        [status] = followups(emulator, emulator.invoke_command(admin, "status"))
        assert "Queue:" in status.body["content"], "a command is answered while answers wait"
        wait_until(lambda: core.store.score(exchange) == 1, TIMEOUT, what="Bob's vote while answers wait")

        refused = wait_until(
            lambda: (
                len(texts := [m["content"] for m in emulator.bot_messages(dm) if m["content"].startswith("⚠️")]) == 2
                and texts
            ),
            TIMEOUT,
            what="the two questions over the cap to be refused",
        )
        assert all(text.startswith("⚠️ You already have 6 questions waiting; I'll get to them") for text in refused)
        wait_until(lambda: core.generation.queued() == 5, TIMEOUT, what="Alice's six: 1 running, 5 queued")
        time.sleep(0.3)
        assert core.generation.queued() == 5, "over the cap, nothing more is queued"
    finally:
        gate.set()
    wait_until(
        lambda: len([m for m in emulator.bot_messages(dm) if m["content"] == "Paris."]) == 6,
        TIMEOUT,
        what="Alice's six answers",
    )
    assert core.store.count_exchanges() == 7, "refused questions are not stored"


# ----------------------------------------------------------------------------- resilience


def test_rate_limited_post_is_retried(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Eventually.", discord__seed_reactions=False)
    start_bot(core)
    emulator.rate_limit("POST", r"/channels/\d+/messages", times=1, retry_after=0.3)
    user = emulator.add_user("ivy")
    asked = emulator.send_message(user, f"{emulator.mention()} are you there?")
    [answer] = final_reply(emulator, asked, seeded=False)
    wait_until(lambda: answer["content"] == "Eventually.", TIMEOUT, what="the final edit")

    # The message is visible before the emulator has finished answering the retried call.
    def both_answered() -> list[Any] | None:
        calls = emulator.calls_to("POST", r"/channels/\d+/messages")
        return calls if len(calls) >= 2 else None

    posts = wait_until(both_answered, TIMEOUT, what="the retried post to be answered")
    assert [c.status for c in posts] == [429, 200]
    assert posts[1].at - posts[0].at >= 0.25, "waited retry_after before retrying"


def test_gateway_resume_replays_missed_events_once(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Answered.")
    start_bot(core)
    user = emulator.add_user("jo")
    before = emulator.send_message(user, f"{emulator.mention()} before the drop")
    final_reply(emulator, before)

    emulator.drop_gateway(hold_resume=True)
    wait_until(lambda: any(op["op"] == 6 for op in emulator.gateway_ops), TIMEOUT, what="a RESUME")
    assert not emulator.is_connected()
    missed = emulator.send_message(user, f"{emulator.mention()} sent while disconnected")
    # Replay from the earlier message too (at-least-once): it must not be answered twice.
    emulator.replay_from = emulator.seq_of("MESSAGE_CREATE", lambda d: d["id"] == before["id"])
    emulator.release_resume()

    [answer] = final_reply(emulator, missed)
    assert answer["content"] == "Answered."
    resume = next(op["d"] for op in emulator.gateway_ops if op["op"] == 6)
    assert resume["session_id"] and resume["seq"] >= 2
    assert sum(op["op"] == 2 for op in emulator.gateway_ops) == 1, "resumed, not re-identified"
    replayed = [p["d"]["id"] for p in emulator.replayed if p["t"] == "MESSAGE_CREATE"]
    assert before["id"] in replayed and missed["id"] in replayed
    time.sleep(0.5)  # a double answer would show up by now
    assert len(emulator.replies_to(before["id"])) == 1 and len(emulator.replies_to(missed["id"])) == 1


# ----------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_real_model_answers_a_mention(
    emulator: DiscordEmulator, real_core: Core, start_bot: Callable[..., BotThread]
) -> None:
    discord_settings = real_core.settings.discord.model_copy(
        update={
            "api_url": emulator.api_url,
            "gateway_url": emulator.gateway_url,
            "stream_interval_s": 0.5,
        }
    )
    settings = real_core.settings.model_copy(update={"discord": discord_settings})
    start_bot(real_core, settings)
    user = emulator.add_user("kim")
    asked = emulator.send_message(user, f"{emulator.mention()} What is the capital of France?")
    parts = wait_until(
        lambda: (ps := emulator.replies_to(asked["id"])) and len(ps[-1]["reactions"]) == 2 and ps,
        180,
        what="the real model's answer",
    )
    exchange = real_core.exchange_for_message("discord", parts[0]["id"])
    assert exchange is not None
    stored = real_core.store.exchange(exchange)
    assert stored is not None and stored.reply.strip()
    assert "\n".join(p["content"] for p in parts).split() == stored.reply.split()
