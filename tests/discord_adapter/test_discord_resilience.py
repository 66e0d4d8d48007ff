"""The Discord adapter: a flood from one user that must stall no one else, rate limits, a gateway
resume, and one case on the real default model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.core import Core
from tests.discord_adapter.helpers import ADMIN_ID, TIMEOUT, BotThread, buttons, final_reply, followups
from tests.emulators.discord_api import DiscordEmulator, wait_until

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
    core = fast_core(reply="Eventually.")
    start_bot(core)
    emulator.rate_limit("POST", r"/channels/\d+/messages", times=1, retry_after=0.3)
    user = emulator.add_user("ivy")
    asked = emulator.send_message(user, f"{emulator.mention()} are you there?")
    [answer] = final_reply(emulator, asked)
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
        }
    )
    tuning = real_core.settings.tuning.model_copy(update={"discord_stream_interval_s": 0.5})
    settings = real_core.settings.model_copy(update={"discord": discord_settings, "tuning": tuning})
    start_bot(real_core, settings)
    user = emulator.add_user("kim")
    asked = emulator.send_message(user, f"{emulator.mention()} What is the capital of France?")
    parts = wait_until(
        lambda: (ps := emulator.replies_to(asked["id"])) and buttons(ps[-1]) and ps,
        180,
        what="the real model's answer",
    )
    exchange = real_core.exchange_for_message("discord", parts[0]["id"])
    assert exchange is not None
    stored = real_core.store.exchange(exchange)
    assert stored is not None and stored.reply.strip()
    assert "\n".join(p["content"] for p in parts).split() == stored.reply.split()
