"""Slack's AI app side panel (`slack.assistant`): a greeting and suggested prompts from what the
bot was taught, "thinking…" while it writes, a title from the first question, and the answer in
the assistant thread, through the same core path as a DM. Channel mentions keep working."""

from __future__ import annotations

import time

from adapters.slack.assistant import GREETING, MAX_PROMPTS, THINKING
from tests.emulators.slack_api import SlackEmulator
from tests.fakes import FakeEngine
from tests.slack_adapter.helpers import ADMIN, ALICE, CHANNEL, DM, REPLY, StartBot, final_reply

TAUGHT = [f"Where is office number {i}?" for i in range(6)]
SHOWN = REPLY + "\n\n📚 From"  # the answer, and the line that says which verified answers it used


def test_an_assistant_thread_is_greeted_titled_and_answered(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(FakeEngine(REPLY, delay_s=0.02), slack__assistant=True)
    for question in TAUGHT:
        core.rules.teach("slack", ADMIN, question, "On Main Street.")
    core.examples.add("What does the other team know?", "Secrets.", "good", "vote", None, "slack:TOTHER")

    started = slack.assistant_thread_started(DM, ALICE, context_channel=CHANNEL)
    thread_ts = started["assistant_thread"]["thread_ts"]
    slack.wait_ack(slack.send_event(started))
    greeting = slack.wait_for(lambda: slack.thread(DM, thread_ts), what="the greeting")[0]
    assert greeting["text"] == GREETING and greeting.get("thread_ts") == thread_ts
    prompts = slack.wait_for(lambda: slack.ok_calls("assistant.threads.setSuggestedPrompts"), what="prompts")[0]
    titles = [p["title"] for p in prompts.params["prompts"]]
    assert titles == TAUGHT[:MAX_PROMPTS], "taught questions of this workspace, at most four"
    assert prompts.params["thread_ts"] == thread_ts

    question = slack.user_message(DM, ALICE, "Where is the office?", thread_ts=thread_ts, channel_type="im")
    slack.send_event(question)
    answer = slack.wait_for(
        lambda: [m for m in slack.thread(DM, thread_ts) if m.get("bot_id") and m["text"].startswith(SHOWN)
                 and len(m.get("blocks", [])) == 2], what="the answer in the assistant thread",
    )[0]  # fmt: skip
    assert answer["thread_ts"] == thread_ts
    (title,) = slack.ok_calls("assistant.threads.setTitle")
    assert (title.params["title"], title.params["thread_ts"]) == ("Where is the office?", thread_ts)
    status = slack.ok_calls("assistant.threads.setStatus")[0]
    assert status.params["status"] == THINKING
    first_post = [c for c in slack.ok_calls("chat.postMessage") if c.params.get("thread_ts") == thread_ts][1]
    assert status.at < first_post.at, "thinking… shows before the answer starts"
    exchange = core.store.exchanges()[0]
    assert exchange.user_text == "Where is the office?" and exchange.scope == f"slack:dm:{DM}", "as in a DM"

    # A follow-up in the same thread keeps its title.
    slack.send_event(slack.user_message(DM, ALICE, "and on Sundays?", thread_ts=thread_ts, channel_type="im"))
    slack.wait_for(lambda: core.store.count_exchanges() == 2, what="the follow-up's answer")
    assert len(slack.ok_calls("assistant.threads.setTitle")) == 1


def test_channel_mentions_still_work_with_the_assistant_on(slack: SlackEmulator, socket_bot: StartBot) -> None:
    socket_bot(slack__assistant=True)
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> hello?", mention=True)
    slack.send_event(mention)
    assert final_reply(slack, CHANNEL, REPLY)["thread_ts"] == mention["ts"]
    assert not slack.calls("assistant.threads.setStatus")


def test_a_new_thread_is_greeted_once_with_prompts_its_answers_can_use(
    slack: SlackEmulator, socket_bot: StartBot
) -> None:
    core = socket_bot(slack__assistant=True)
    core.rules.teach("slack", ADMIN, "Where is the office?", "On Main Street.")  # global: every place sees it
    core.examples.add("What did this workspace vote up?", "Lunch at noon.", "good", "vote", None, "slack:T0TEST")
    core.examples.add("What did I ask before?", "Your badge.", "good", "vote", None, f"slack:dm:{DM}")
    started = slack.assistant_thread_started(DM, ALICE)
    thread_ts = started["assistant_thread"]["thread_ts"]
    for _ in range(2):  # Slack delivers it again when the ack is late
        slack.wait_ack(slack.send_event(started))
    prompts = slack.wait_for(lambda: slack.ok_calls("assistant.threads.setSuggestedPrompts"), what="prompts")[0]
    titles = [p["title"] for p in prompts.params["prompts"]]
    # The panel is a DM: its answers retrieve global examples and the DM's own, not the workspace's votes.
    assert titles == ["Where is the office?", "What did I ask before?"]
    slack.wait_for(lambda: slack.thread(DM, thread_ts), what="the greeting")
    time.sleep(0.3)
    assert [m["text"] for m in slack.thread(DM, thread_ts)] == [GREETING], "one greeting, however many deliveries"
    assert len(slack.ok_calls("assistant.threads.setSuggestedPrompts")) == 1


def test_a_workspace_not_allowed_gets_no_greeting_and_no_prompts(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(slack__assistant=True, slack__allowed_teams=["TOTHER"])  # the emulator's team is T0TEST
    core.rules.teach("slack", ADMIN, "Where is the office?", "On Main Street.")
    started = slack.assistant_thread_started(DM, ALICE)
    slack.wait_ack(slack.send_event(started))
    time.sleep(0.5)
    assert not slack.thread(DM, started["assistant_thread"]["thread_ts"])
    assert not slack.calls("assistant.threads.setSuggestedPrompts")
