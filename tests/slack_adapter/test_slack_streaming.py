"""Native streaming (chat.startStream / appendStream / stopStream) where the workspace supports it,
chat.update where it does not, the same final text either way, Markdown, and no pings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulators.slack_api import SlackEmulator
from tests.fakes import FakeEngine
from tests.slack_adapter.helpers import ALICE, BOB, CHANNEL, DM, REPLY, StartBot, exchange_of, posts_in

# Markdown, and everything that could ping, forge or hide a link: none of it may reach Slack as written.
RISKY = "**Bold** and a [link](https://example.com). Ping <!channel> @here @channel <@U123> & more > less"
RISKY_SHOWN = (
    "**Bold** and a [link]\u2060(https://example.com). Ping &lt;!channel&gt; @\u2060here @\u2060channel "
    "&lt;@U123&gt; &amp; more &gt; less"
)


def finished(slack: SlackEmulator, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """The bot's messages in the thread once the reply is finished (its buttons are on)."""

    def done() -> list[dict[str, Any]]:
        ms = [m for m in slack.thread(channel, thread_ts) if m.get("bot_id")]
        return ms if ms and not ms[-1].get("streaming") and any(b["type"] == "context_actions"
                                                                 for b in ms[-1].get("blocks", [])) else []  # fmt: skip

    return slack.wait_for(done, what="the finished reply")


def markdown_of(slack: SlackEmulator, channel: str, ts: str) -> str:
    return next(m["markdown"] for m in slack.bot_messages(channel) if m["ts"] == ts)


def ask(slack: SlackEmulator, user: str = ALICE) -> dict[str, Any]:
    mention = slack.user_message(CHANNEL, user, "<@UBOT> capital of France?", mention=True)
    slack.send_event(mention)
    return mention


@pytest.mark.parametrize("mode", ["auto", "native"])
def test_a_reply_in_a_thread_streams_natively(slack: SlackEmulator, socket_bot: StartBot, mode: str) -> None:
    core = socket_bot(FakeEngine(REPLY, delay_s=0.03), tuning__slack_streaming=mode)
    mention = ask(slack)
    (reply,) = finished(slack, CHANNEL, mention["ts"])
    assert reply["streamed"] and reply["markdown"] == REPLY and reply["text"] == REPLY
    start = slack.ok_calls("chat.startStream")[0].params
    assert (start["channel"], start["thread_ts"]) == (CHANNEL, mention["ts"])
    assert (start["recipient_user_id"], start["recipient_team_id"]) == (ALICE, slack.team_id), "needed in channels"
    assert slack.ok_calls("chat.appendStream"), "the reply grows while it is written"
    assert [c.params["ts"] for c in slack.ok_calls("chat.stopStream")] == [reply["ts"]]
    assert not slack.calls("chat.update") and not posts_in(slack, CHANNEL), "no placeholder, no edits"
    buttons = reply["blocks"][0]["elements"][0]
    assert buttons["positive_button"]["value"] == f"up:{exchange_of(slack, core, CHANNEL, reply['ts'])}"
    # A vote by reaction on the streamed message counts too: it is linked to its exchange.
    slack.send_event(slack.reaction_event(CHANNEL, reply["ts"], BOB, "+1"))
    slack.wait_for(lambda: core.store.score(exchange_of(slack, core, CHANNEL, reply["ts"])) == 1, what="the vote")


def test_where_streaming_is_refused_edits_show_the_same_text(slack: SlackEmulator, socket_bot: StartBot) -> None:
    socket_bot(FakeEngine(RISKY, delay_s=0.02), tuning__slack_streaming="auto")
    native = finished(slack, CHANNEL, ask(slack)["ts"])

    slack.streaming_error = "not_allowed"  # the workspace cannot stream (any more)
    edited = finished(slack, CHANNEL, ask(slack, BOB)["ts"])
    assert len(slack.calls("chat.startStream")) == 2 and not edited[0].get("streamed")
    assert [m["markdown"] for m in edited] == [m["markdown"] for m in native] == [RISKY_SHOWN]
    assert edited[0]["edits"][0] == "…", "the edit path's placeholder came first"

    finished(slack, CHANNEL, ask(slack)["ts"])
    assert len(slack.calls("chat.startStream")) == 2, "a workspace that refused is not asked again"


def test_a_dm_without_a_thread_uses_edits(slack: SlackEmulator, socket_bot: StartBot) -> None:
    socket_bot(tuning__slack_streaming="native", slack__agent=False)  # the agent answers every DM in a thread
    slack.send_event(slack.user_message(DM, ALICE, "hello", channel_type="im"))
    slack.wait_for(lambda: any(len(m.get("blocks", [])) == 2 for m in slack.bot_messages(DM)), what="the reply")
    assert not slack.calls("chat.startStream"), "Slack streams only in threads"


@pytest.mark.parametrize("mode", ["edit", "native"])
def test_markdown_is_rendered_and_pings_no_one(slack: SlackEmulator, socket_bot: StartBot, mode: str) -> None:
    socket_bot(FakeEngine(RISKY), tuning__slack_streaming=mode)
    mention = ask(slack)
    (reply,) = finished(slack, CHANNEL, mention["ts"])
    assert reply["markdown"] == RISKY_SHOWN
    sent = [str(c.params) for m in ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream",
                                    "chat.stopStream") for c in slack.calls(m)]  # fmt: skip
    for ping in ("<!channel>", "<@U123>", "@here", "@channel"):
        assert not any(ping in text for text in sent), f"{ping} reached Slack"
    if mode == "edit":
        (markdown,) = [b for b in reply["blocks"] if b["type"] == "markdown"]
        assert markdown["text"] == reply["text"] == RISKY_SHOWN
    else:
        assert any("markdown_text" in str(c.params) for c in slack.calls("chat.startStream"))


def test_a_long_reply_streams_its_first_part_and_posts_the_rest(slack: SlackEmulator, socket_bot: StartBot) -> None:
    paragraph = " ".join(f"Sentence {i} says something." for i in range(40))
    long_reply = "\n\n".join(f"{n}. {paragraph}" for n in range(8))
    socket_bot(FakeEngine(long_reply), tuning__slack_streaming="native", max_new_tokens=4000, context_tokens=8192)
    mention = ask(slack)
    parts = finished(slack, CHANNEL, mention["ts"])
    assert len(parts) >= 3 and parts[0]["streamed"] and not parts[1].get("streamed")
    assert "\n\n".join(m["markdown"] for m in parts) == long_reply
    assert [len(m.get("blocks", [])) for m in parts[1:]] == [1] * (len(parts) - 2) + [2], "buttons on the last"
