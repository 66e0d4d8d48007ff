"""Slack's agent experience (`slack.agent`, on by default; the manifest's `agent_view`): a DM is
answered in its own thread as an agent session (processing with a title, then active), the stream
shows the steps (the verified answers looked up, the LoRA version that wrote it), Stop stops the
model and leaves the session out of processing, and the Messages tab greets once and pins prompts."""

from __future__ import annotations

import threading
import time
from typing import Any

from adapters.slack.assistant import GREETING, PROMPTS_TITLE
from adapters.streaming import STOPPED
from bot.generation.engine import NO_HINTS
from bot.types import ConversationKey
from tests.emulators.slack_api import SlackEmulator
from tests.fakes import FakeEngine
from tests.slack_adapter.helpers import ADMIN, ALICE, BOB, CHANNEL, DM, REPLY, StartBot, exchange_of

LONG = " ".join(f"word{i}" for i in range(400))  # about 20 s at 0.05 s a word: Stop comes long before the end


def bot_thread(slack: SlackEmulator, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.thread(channel, thread_ts) if m.get("bot_id")]


def test_a_dm_is_answered_in_its_thread_as_a_session_with_its_steps(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(FakeEngine(REPLY, delay_s=0.02), tuning__slack_streaming="auto")
    core.rules.teach("slack", ADMIN, "What is the capital of France?", REPLY)
    question = slack.user_message(DM, ALICE, "capital of France?", channel_type="im")
    slack.send_event(question)
    thread = question["ts"]  # agent_view: every DM message starts its own thread
    reply = slack.wait_for(lambda: [m for m in bot_thread(slack, DM, thread) if not m["streaming"]
                                    and m.get("blocks")], what="the finished answer in the DM's thread")[0]  # fmt: skip
    assert reply["streamed"] and reply["markdown"] == REPLY
    lookup, write = reply["tasks"]["lookup"], reply["tasks"]["write"]
    assert lookup["status"] == "complete" and lookup["title"] == "Looked up verified answers: 1 verified answer"
    assert "“What is the capital of France?” (taught)" in lookup["details"]
    assert (write["status"], write["details"]) == ("complete", "with the base model")
    slack.wait_for(lambda: slack.session_status(DM, thread) == "active", what="the session back to active")
    session = slack.sessions[(DM, thread)]
    assert session["statuses"] == ["processing", "active"] and session["title"] == "capital of France?"
    processing = slack.ok_calls("agents.sessions.setStatus")[0]
    assert processing.at < slack.ok_calls("chat.startStream")[0].at, "Stop is shown before the answer starts"
    exchange = core.store.exchanges()[0]
    assert exchange.conversation == f"slack:{DM}:{thread}" and exchange.scope == f"slack:dm:{DM}"
    # A follow-up in that thread is the same conversation and the same session.
    slack.send_event(slack.user_message(DM, ALICE, "and Italy?", thread_ts=thread, channel_type="im"))
    slack.wait_for(lambda: core.store.count_exchanges() == 2, what="the follow-up")
    assert core.store.history(ConversationKey.parse(exchange.conversation), 5)[0].user == "capital of France?"


def test_each_new_dm_message_starts_a_conversation_of_its_own(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    for text in ("hello there", "something else"):
        slack.send_event(slack.user_message(DM, ALICE, text, channel_type="im"))
        slack.wait_for(lambda t=text: [e for e in core.store.exchanges() if e.user_text == t], what="an answer")
    first, second = core.store.exchanges()
    assert first.conversation != second.conversation
    assert [t.user for t in core.store.history(ConversationKey.parse(second.conversation), 8)] == ["something else"]


def test_stop_during_a_long_answer_stops_the_model_and_the_session(slack: SlackEmulator, socket_bot: StartBot) -> None:
    engine = FakeEngine(LONG, delay_s=0.05)
    words: list[float] = []
    core = socket_bot(engine, tuning__slack_streaming="auto", max_new_tokens=1000)
    original = core.generation.engine.generate  # count the words the model writes, and when

    def counting(ids: list[int], limit: int, on_text: Any, hints: Any = NO_HINTS) -> int:
        return original(ids, limit, lambda text: (words.append(time.monotonic()), on_text(text)), hints)

    core.generation.engine.generate = counting  # type: ignore[method-assign]
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> tell me everything", mention=True)
    slack.send_event(mention)
    thread = mention["ts"]
    slack.wait_for(lambda: any(m["streaming"] and len(m["markdown"]) > 40 for m in bot_thread(slack, CHANNEL, thread)),
                   what="the answer streaming")  # fmt: skip
    assert slack.session_status(CHANNEL, thread) == "processing"
    clicked = time.monotonic()
    slack.send_event(slack.click_stop(CHANNEL, thread, ALICE))
    exchange = slack.wait_for(lambda: core.store.exchanges()[0] if core.store.count_exchanges() else None,
                              what="the stopped reply stored")  # fmt: skip
    assert exchange.stopped and exchange.reply and exchange.reply in LONG and len(exchange.reply) < len(LONG) // 2
    assert words[-1] - clicked < 1.0, "the model wrote its last word within a second of the click"
    count = len(words)
    time.sleep(0.5)
    assert len(words) == count, "and nothing after it"
    slack.wait_for(lambda: slack.session_status(CHANNEL, thread) == "active", what="the session out of processing")
    (shown,) = bot_thread(slack, CHANNEL, thread)
    slack.wait_for(lambda: STOPPED in bot_thread(slack, CHANNEL, thread)[0]["text"], what="the reply marked stopped")
    assert not any(b["type"] == "context_actions" for b in shown.get("blocks", [])), "no feedback buttons"
    # A 👍 by reaction on the stopped reply makes no example.
    slack.send_event(slack.reaction_event(CHANNEL, shown["ts"], BOB, "+1"))
    time.sleep(0.5)
    assert core.store.score(exchange_of(slack, core, CHANNEL, shown["ts"])) == 0
    assert not core.examples.list(label="good")


def test_stop_while_waiting_in_line_takes_the_question_out(slack: SlackEmulator, socket_bot: StartBot) -> None:
    gate = threading.Event()
    core = socket_bot(FakeEngine(REPLY, gate=gate))
    first = slack.user_message(CHANNEL, BOB, "<@UBOT> first", mention=True)
    slack.send_event(first)
    slack.wait_for(lambda: slack.session_status(CHANNEL, first["ts"]) == "processing", what="the first writing")
    second = slack.user_message(CHANNEL, ALICE, "<@UBOT> second", mention=True)
    slack.send_event(second)
    slack.wait_for(lambda: slack.session_status(CHANNEL, second["ts"]) == "processing", what="the second waiting")
    slack.send_event(slack.click_stop(CHANNEL, second["ts"], ALICE))
    slack.wait_for(lambda: slack.session_status(CHANNEL, second["ts"]) == "active", what="the second stopped")
    gate.set()
    slack.wait_for(lambda: core.store.count_exchanges() == 2, what="both stored")
    stopped = next(e for e in core.store.exchanges() if e.user_text == "second")
    assert stopped.stopped and stopped.reply == ""
    assert len(core.generation.engine.calls) == 1, "the stopped question was never written"


def test_the_messages_tab_greets_once_and_pins_the_prompts_a_dm_can_use(
    slack: SlackEmulator, socket_bot: StartBot
) -> None:
    core = socket_bot()
    core.rules.teach("slack", ADMIN, "Where is the office?", "On Main Street.")
    core.examples.add("What did this workspace vote up?", "Lunch at noon.", "good", "vote", None, "slack:T0TEST")
    for _ in range(2):  # opened twice
        slack.wait_ack(slack.send_event(slack.app_home_opened(ALICE, DM)))
    slack.wait_for(lambda: slack.prompts.get(DM), what="the prompts")
    assert slack.prompts[DM] == [{"title": "Where is the office?", "message": "Where is the office?"}]
    call = slack.ok_calls("assistant.threads.setSuggestedPrompts")[0]
    assert "thread_ts" not in call.params and call.params["title"] == PROMPTS_TITLE
    slack.wait_for(lambda: slack.bot_messages(DM), what="the greeting")
    time.sleep(0.3)
    assert [m["text"] for m in slack.bot_messages(DM)] == [GREETING], "one greeting"
    assert len(slack.ok_calls("assistant.threads.setSuggestedPrompts")) == 1, "prompts set again only later"
    slack.send_event(slack.app_home_opened(BOB, "D0BOB", tab="home"))
    slack.send_event(slack.app_context_changed(ALICE, DM, CHANNEL))
    time.sleep(0.3)
    assert not slack.bot_messages("D0BOB"), "the Home tab is not the Messages tab"


def test_a_workspace_without_agent_sessions_is_asked_once_and_still_answered(
    slack: SlackEmulator, socket_bot: StartBot
) -> None:
    slack.agent_error = "not_allowed_token_type"
    core = socket_bot()
    for i in range(2):
        slack.send_event(slack.user_message(CHANNEL, ALICE, f"<@UBOT> question {i}", mention=True))
        slack.wait_for(lambda n=i + 1: core.store.count_exchanges() == n, what="an answer")
    assert len(slack.calls("agents.sessions.setStatus")) == 1


def test_the_edit_view_says_where_the_answer_came_from(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    core.rules.teach("slack", ADMIN, "What is the capital of France?", REPLY)
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> capital of France?", mention=True)
    slack.send_event(mention)
    footer = "\n\n📚 From “What is the capital of France?” (taught) · the base model"
    slack.wait_for(lambda: [m for m in bot_thread(slack, CHANNEL, mention["ts"]) if m["text"] == REPLY + footer],
                   what="the answer with its context line")  # fmt: skip
    assert core.store.exchanges()[0].reply == REPLY, "the line is shown, not stored"
