"""The Discord adapter: reactions as votes, corrections by reply, and the slash commands (deferred
answers, typed options, the admin checks)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

import discord

from bot.core import Core
from bot.types import CommandResult
from tests.discord_adapter.helpers import ADMIN_ID, TIMEOUT, BotThread, command_spy, final_reply, followups
from tests.emulators.discord_api import DiscordEmulator, wait_until

# ----------------------------------------------------------------------------- reactions and corrections


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
    assert len(core.generation.engine.calls) == 1, "a correction is not a question"  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- slash commands


def test_slash_commands_defer_then_follow_up(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core()
    texts = command_spy(core)
    start_bot(core)
    admin = emulator.add_user("admin", user_id=ADMIN_ID)

    # Admin commands synced to the configured guild, hidden by default; /help and /reset global (DMs too).
    [sync] = emulator.calls_to("PUT", rf"/applications/{emulator.app_id}/guilds/{emulator.guild_id}/commands")
    [global_sync] = emulator.calls_to("PUT", rf"/applications/{emulator.app_id}/commands")
    synced = {c["name"]: c for c in sync.body + global_sync.body}
    assert {c["name"] for c in sync.body} == {"status", "retrain", "teach", "lora", "feedback", "examples"}
    assert {c["name"] for c in global_sync.body} == {"help", "reset"}
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
    assert len(sync.body) == 8, "every command, in one place"
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
    emulator.commands[None] = [c for synced in emulator.commands.values() for c in synced]  # as if all global
    moderator = emulator.add_user("moderator", admin_role=True)
    [refusal] = followups(emulator, emulator.invoke_command(moderator, "status"))
    assert "admins only" in refusal.body["content"]
