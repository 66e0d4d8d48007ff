"""The Slack adapter: reactions as votes, corrections in a thread, the slash command, and a flood
from one user that must stall no one else."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from adapters.slack.app import ACK_WAIT_S
from bot.core import Core
from bot.types import CommandResult, ConversationKey
from tests.emulators.slack_api import SlackEmulator
from tests.fakes import FakeEngine
from tests.slack_adapter.helpers import (
    ADMIN,
    ALICE,
    BOB,
    CHANNEL,
    DM,
    REPLY,
    StartBot,
    exchange_of,
    final_reply,
    posts_in,
)

# -- reactions and corrections -----------------------------------------------------------------


def test_reaction_added_then_removed_is_a_vote_then_a_retraction(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> capital of France?", mention=True)
    slack.send_event(mention)
    reply = final_reply(slack, CHANNEL, REPLY)
    exchange = exchange_of(slack, core, CHANNEL, reply["ts"])

    added = slack.reaction_event(CHANNEL, reply["ts"], BOB, "+1::skin-tone-3")
    added_id = "EvVOTE1"
    slack.send_event(added, event_id=added_id)
    # The score is written first, then the example: wait for both.
    slack.wait_for(lambda: core.store.score(exchange) == 1 and core.examples.count() == 1, what="the 👍 to count")
    assert core.store.user_vote(exchange, "slack", BOB) == 1

    slack.send_event(slack.reaction_event(CHANNEL, reply["ts"], BOB, "+1::skin-tone-3", added=False))
    slack.wait_for(lambda: core.store.score(exchange) == 0 and core.examples.count() == 0, what="the retraction")
    assert core.store.user_vote(exchange, "slack", BOB) == 0

    # A late retry of the first delivery must not bring the vote back; a 👍 on a user's message
    # is not a vote at all.
    retry = slack.send_event(added, event_id=added_id, retry_attempt=1, retry_reason="timeout")
    slack.wait_ack(retry)
    on_user_message = slack.reaction_event(CHANNEL, mention["ts"], BOB, "+1") | {"item_user": ALICE}
    slack.wait_ack(slack.send_event(on_user_message))
    assert slack.stays(lambda: core.store.score(exchange) == 0 and core.examples.count() == 0)


def test_another_apps_bot_user_reacting_is_not_a_vote(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    slack.add_user("UOTHERBOT", "autoreact")
    slack.users["UOTHERBOT"] |= {"is_bot": True}  # another app's bot user, reacting to every message
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> capital of France?", mention=True)
    slack.send_event(mention)
    reply = final_reply(slack, CHANNEL, REPLY)
    exchange = exchange_of(slack, core, CHANNEL, reply["ts"])
    slack.wait_ack(slack.send_event(slack.reaction_event(CHANNEL, reply["ts"], "UOTHERBOT", "+1")))
    assert slack.stays(lambda: core.store.score(exchange) == 0 and core.examples.count() == 0)
    slack.send_event(slack.reaction_event(CHANNEL, reply["ts"], BOB, "+1"))
    slack.wait_for(lambda: core.store.score(exchange) == 1, what="a person's 👍 to count")


def test_correction_in_the_thread(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> capital of France?", mention=True)
    slack.send_event(mention)
    reply = final_reply(slack, CHANNEL, REPLY)
    exchange = exchange_of(slack, core, CHANNEL, reply["ts"])

    slack.send_event(slack.user_message(CHANNEL, ADMIN, "correct: Paris, obviously.", thread_ts=mention["ts"]))
    answer = slack.wait_for(
        lambda: [m for m in slack.thread(CHANNEL, mention["ts"]) if m.get("bot_id") and m["text"].startswith("Thanks")],
        what="the correction's confirmation",
    )
    assert "learned" in answer[0]["text"]
    assert [(c.exchange_id, c.answer) for c in core.store.corrections()] == [(exchange, "Paris, obviously.")]
    assert len(core.generation.engine.calls) == 1, "a correction is not answered as a question"


# -- the slash command -------------------------------------------------------------------------


class SlowCommands:
    """The real core, except that its commands take `delay_s` (as a long admin command would)."""

    def __init__(self, core: Core, delay_s: float) -> None:
        self._core, self._delay_s = core, delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def handle(self, event: Any) -> Any:
        if getattr(event, "command", None) is not None:
            time.sleep(self._delay_s)
        return self._core.handle(event)


def test_a_slow_slash_command_is_acked_in_time_then_answers_an_admin_privately(
    slack: SlackEmulator, socket_bot: StartBot
) -> None:
    socket_bot(wrap=lambda core: SlowCommands(core, delay_s=ACK_WAIT_S + 2.0))
    envelope = slack.send_command("/assistant", "status", ADMIN, CHANNEL)
    ack = slack.wait_ack(envelope)
    # The ack waits for the command's writes, but never past ACK_WAIT_S: Slack gives up after 3 s.
    assert ACK_WAIT_S - 0.1 < ack.latency_s < 3.0
    responded = slack.wait_for(slack.responses, what="the command's answer")[0]
    assert responded.at > ack.at
    assert responded.body["response_type"] == "ephemeral", "admin output is shown to the admin only"
    assert "Model:" in responded.body["text"] and "Examples:" in responded.body["text"]


def test_slash_command_refuses_a_non_admin_and_helps_everyone(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    for text in ("status", "help"):
        slack.wait_ack(slack.send_command("/assistant", text, ALICE, CHANNEL))
    answers = slack.wait_for(lambda: len(slack.responses()) == 2 and slack.responses(), what="two answers")
    # Listeners run concurrently: tell the answers apart by content, not order.
    refused, helped = sorted((r.body["text"] for r in answers), key=lambda text: "admins only" not in text)
    assert "Sorry, `status` is for admins only" in refused
    assert "Commands:" in helped and "retrain" not in helped, "non-admins see the commands they may use"
    assert all(r.body["response_type"] == "ephemeral" for r in answers)
    assert core.store.count_exchanges() == 0


def test_slash_command_reset_forgets_the_conversation(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(slack__agent=False)  # a DM is one conversation (with the agent, each message starts one)
    slack.send_event(slack.user_message(DM, ALICE, "remember this", channel_type="im"))
    final_reply(slack, DM, REPLY)
    assert core.store.history(ConversationKey("slack", DM, ""), 8)
    slack.wait_ack(slack.send_command("/assistant", "reset", ALICE, DM))
    slack.wait_for(slack.responses, what="the reset's answer")
    assert core.store.history(ConversationKey("slack", DM, ""), 8) == []


class ScriptedRetrain:
    """The real core, except that `retrain` returns a followup the test completes."""

    def __init__(self, core: Core, followup: Future[str]) -> None:
        self._core, self.followup = core, followup

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def handle(self, event: Any) -> Any:
        if getattr(event, "command", None) == "retrain":
            return CommandResult("Training started.", ephemeral=False, followup=self.followup)
        return self._core.handle(event)


def test_slash_command_followup_is_posted_in_the_channel(slack: SlackEmulator, socket_bot: StartBot) -> None:
    followup: Future[str] = Future()
    socket_bot(wrap=lambda core: ScriptedRetrain(core, followup))
    slack.wait_ack(slack.send_command("/assistant", "retrain", ADMIN, CHANNEL))
    started = slack.wait_for(slack.responses, what="the command's answer")[0]
    assert (started.body["text"], started.body["response_type"]) == ("Training started.", "in_channel")
    assert posts_in(slack, CHANNEL) == []

    followup.set_result("LoRA v2 trained and promoted.")
    posted = slack.wait_for(lambda: posts_in(slack, CHANNEL), what="the followup in the channel")
    assert posted[0].params["text"] == "LoRA v2 trained and promoted."
    assert "thread_ts" not in posted[0].params


# -- a flood from one user ---------------------------------------------------------------------


def test_a_flood_from_one_user_stalls_no_one_else(slack: SlackEmulator, socket_bot: StartBot) -> None:
    gate = threading.Event()  # open for the first answer, then closed to hold the flood
    gate.set()
    core = socket_bot(FakeEngine(REPLY, gate=gate), max_waiting_per_user=6)
    asked = slack.user_message(CHANNEL, ADMIN, "<@UBOT> capital of France?", mention=True)
    slack.send_event(asked)
    reply = final_reply(slack, CHANNEL, REPLY)
    exchange = exchange_of(slack, core, CHANNEL, reply["ts"])

    gate.clear()
    try:
        # More questions than bolt has listener threads (5), and than Alice's cap (6).
        for i in range(8):
            slack.send_event(slack.user_message(DM, ALICE, f"question {i}", channel_type="im"))
        # As many as bolt's 5 listener threads could hold: 1 running, 4 queued.
        slack.wait_for(lambda: core.generation.queued() >= 4, what="Alice's questions to wait")

        vote = slack.send_event(slack.reaction_event(CHANNEL, reply["ts"], BOB, "+1"))
        status = slack.send_command("/assistant", "status", ADMIN, CHANNEL)
        assert slack.wait_ack(status).latency_s < 3.0, "a command is acked while answers wait"
        answer = slack.wait_for(slack.responses, what="the status answer while answers wait")[0]
        assert "Queue:" in answer.body["text"]
        assert slack.wait_ack(vote).latency_s < 3.0
        slack.wait_for(lambda: core.store.score(exchange) == 1, what="Bob's vote while answers wait")

        # Refused in the core's handle(), at once, and told to Alice alone.
        refused = slack.wait_for(
            lambda: len(texts := [c.params["text"] for c in slack.ok_calls("chat.postEphemeral")]) == 2 and texts,
            what="the two questions over the cap to be refused",
        )
        assert all(text.startswith("You already have 6 questions waiting; I'll get to them") for text in refused)
        slack.wait_for(lambda: core.generation.queued() == 5, what="Alice's six: 1 running, 5 queued")
        assert slack.stays(lambda: core.generation.queued() == 5), "over the cap, nothing more is queued"
    finally:
        gate.set()
    slack.wait_for(
        lambda: len([m for m in slack.bot_messages(DM) if m["text"] == REPLY]) == 6, what="Alice's six answers"
    )
    assert core.store.count_exchanges() == 7, "refused questions are not stored"
