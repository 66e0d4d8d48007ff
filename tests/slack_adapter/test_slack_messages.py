"""The Slack adapter end to end: the real slack-bolt app, over loopback, against the emulator.

Nothing of bolt or slack_sdk is mocked: Socket Mode runs over a real websocket, HTTP mode over
real signed requests, and every Web API call reaches the emulator, which records it.

Messages: mentions, DMs, threads, what is ignored, long replies, the queue notice, escaping.
The fixtures are in conftest.py, the shared helpers in helpers.py.
"""

from __future__ import annotations

import itertools
from typing import Any

from bot.types import ConversationKey
from tests.emulators.slack_api import MAX_TEXT, SlackEmulator
from tests.fakes import FakeEngine
from tests.slack_adapter.helpers import (
    ADMIN,
    ALICE,
    BOB,
    CHANNEL,
    DM,
    INTERVAL,
    REPLY,
    StartBot,
    exchange_of,
    final_reply,
    posts_in,
    updates_of,
)

# -- messages ----------------------------------------------------------------------------------


def test_mention_streams_a_reply_in_the_thread(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(FakeEngine(REPLY, delay_s=0.05))
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> what is the capital of France?", mention=True)
    # Slack delivers a mention twice: as app_mention and as message.channels.
    acks = [slack.send_event(mention), slack.send_event(mention | {"type": "message", "channel_type": "channel"})]
    for envelope in acks:
        assert slack.wait_ack(envelope).latency_s < 3.0

    reply = final_reply(slack, CHANNEL, REPLY)
    assert reply["thread_ts"] == mention["ts"], "the reply goes in the thread of the mention"
    posts = posts_in(slack, CHANNEL)
    assert len(posts) == 1, "one message, one reply, however many deliveries"
    assert posts[0].params["text"] == "…", "a placeholder is posted at once"

    updates = updates_of(slack, reply["ts"])
    assert len(updates) >= 2, "the reply is streamed into the placeholder, not posted at the end"
    for update in updates[:-1]:
        assert REPLY.startswith(update.params["text"].removesuffix(" …")), update.params["text"]
    times = [posts[0].at] + [u.at for u in updates]
    assert min(b - a for a, b in itertools.pairwise(times)) >= INTERVAL * 0.95, "updates are throttled"

    exchange = core.store.exchange(exchange_of(slack, core, CHANNEL, reply["ts"]))
    assert exchange is not None and exchange.reply == REPLY
    assert exchange.user_text == "what is the capital of France?", "the mention is not part of the question"
    assert exchange.conversation == ConversationKey("slack", CHANNEL, mention["ts"]).as_str()


def test_without_the_agent_a_dm_is_answered_in_the_dm_which_is_the_conversation(
    slack: SlackEmulator, socket_bot: StartBot
) -> None:
    core = socket_bot(slack__agent=False)
    first = slack.user_message(DM, ALICE, "hello there", channel_type="im")
    slack.send_event(first)
    reply = final_reply(slack, DM, REPLY)
    assert "thread_ts" not in reply, "a DM is answered in the DM itself, not in a thread"

    slack.send_event(slack.user_message(DM, ALICE, "and another thing", channel_type="im"))
    slack.wait_for(lambda: [m for m in slack.bot_messages(DM) if m["text"] == REPLY][1:], what="a second DM reply")
    history = core.store.history(ConversationKey("slack", DM, ""), 8)
    assert [turn.user for turn in history] == ["hello there", "and another thing"]
    assert core.store.exchange(exchange_of(slack, core, DM, reply["ts"])) is not None


def test_thread_follow_up_without_a_mention(slack: SlackEmulator, socket_bot: StartBot) -> None:
    socket_bot()
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> first question", mention=True)
    slack.send_event(mention)
    final_reply(slack, CHANNEL, REPLY)

    # Not addressed to the bot: a top-level channel message, a reply in someone else's thread.
    other_root = slack.user_message(CHANNEL, BOB, "lunch anyone?")
    slack.send_event(other_root)
    slack.send_event(slack.user_message(CHANNEL, ALICE, "me!", thread_ts=other_root["ts"]))
    # Addressed: a reply in the bot's thread, no mention needed.
    slack.send_event(slack.user_message(CHANNEL, BOB, "and a follow-up?", thread_ts=mention["ts"]))

    slack.wait_for(
        lambda: len([m for m in slack.thread(CHANNEL, mention["ts"]) if m.get("bot_id") and m["text"] == REPLY]) == 2,
        what="a second reply in the bot's thread",
    )
    assert slack.stays(lambda: len(posts_in(slack, CHANNEL)) == 2), "only the bot's thread is answered"
    assert all(p.params["thread_ts"] == mention["ts"] for p in posts_in(slack, CHANNEL))


def test_bots_edits_and_joins_are_ignored(slack: SlackEmulator, socket_bot: StartBot) -> None:
    socket_bot()
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> hi", mention=True)
    slack.send_event(mention)
    final_reply(slack, CHANNEL, REPLY)
    thread = mention["ts"]

    ignored = [
        slack.user_message(CHANNEL, "UOTHERBOT", "beep", thread_ts=thread) | {"bot_id": "BOTHER"},
        slack.user_message(CHANNEL, "UBOT", "my own echo", thread_ts=thread) | {"bot_id": "BBOT"},
        slack.user_message(CHANNEL, ALICE, "<@UBOT> edited", thread_ts=thread)
        | {"subtype": "message_changed", "message": {"text": "<@UBOT> edited"}},
        slack.user_message(CHANNEL, BOB, "<@BOB> has joined the channel") | {"subtype": "channel_join"},
    ]
    for event in ignored:
        assert slack.wait_ack(slack.send_event(event)).latency_s < 3.0, "ignored events are still acked"
    assert slack.stays(lambda: len(posts_in(slack, CHANNEL)) == 1), "none of them gets a reply"


def test_long_reply_is_split_cleanly_and_every_part_is_linked(slack: SlackEmulator, socket_bot: StartBot) -> None:
    paragraph = " ".join(f"Sentence {i} of this paragraph says something useful." for i in range(20))
    long_reply = "\n\n".join(paragraph for _ in range(9))  # about 9,900 characters
    core = socket_bot(FakeEngine(long_reply), max_new_tokens=4000, context_tokens=8192)
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> tell me everything", mention=True)
    slack.send_event(mention)

    def done() -> list[dict[str, Any]]:
        parts = [m for m in slack.thread(CHANNEL, mention["ts"]) if m.get("bot_id")]
        return parts if "\n\n".join(m["text"] for m in parts) == long_reply else []

    parts = slack.wait_for(done, what="the whole long reply")
    assert len(parts) >= 3
    assert all(len(m["text"]) <= MAX_TEXT and m["text"].endswith("useful.") for m in parts), "cut at paragraphs"
    assert len({exchange_of(slack, core, CHANNEL, m["ts"]) for m in parts}) == 1, "every part links to the one exchange"


def test_a_queued_request_says_so(slack: SlackEmulator, socket_bot: StartBot) -> None:
    socket_bot(FakeEngine(REPLY, delay_s=0.08))  # slow enough that the second request must wait
    for user, channel in ((ALICE, CHANNEL), (BOB, "C0OTHER")):
        slack.send_event(slack.user_message(channel, user, "<@UBOT> question", mention=True))
    for channel in (CHANNEL, "C0OTHER"):
        final_reply(slack, channel, REPLY)
    shown = [text for c in (CHANNEL, "C0OTHER") for m in slack.bot_messages(c) for text in m["edits"]]
    assert any(text.startswith("⏳ Queued: 1 ahead of you") for text in shown), shown


def test_slack_markup_is_escaped_both_ways(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(FakeEngine("Ping <!channel> & <@UADMIN> => now"))
    # Slack escapes &, < and > in what users type; the core must get the plain text.
    slack.send_event(slack.user_message(DM, ALICE, "is 1 &lt; 2 &amp;&amp; 3 &gt; 2?", channel_type="im"))
    final_reply(slack, DM, "Ping &lt;!channel&gt; &amp; &lt;@UADMIN&gt; =&gt; now")  # no @channel, no mention
    assert core.store.exchanges()[0].user_text == "is 1 < 2 && 3 > 2?"

    slack.wait_ack(slack.send_command("/assistant", "teach What is &lt;b&gt;? =&gt; Bold", ADMIN, CHANNEL))
    answer = slack.wait_for(slack.responses, what="the teach answer")[0]
    assert answer.body["text"].startswith("Learned"), answer.body["text"]
    assert "&lt;b&gt;" in answer.body["text"] and "<b>" not in answer.body["text"]
    assert [e.input for e in core.examples.list()] == ["What is <b>?"]


def test_a_markdown_link_in_a_reply_or_a_correction_shows_its_address(
    slack: SlackEmulator, socket_bot: StartBot
) -> None:
    """Slack's Markdown renders `[Sign in](https://...)` as "Sign in", the address hidden under the
    bot's name: the reply, its streamed updates and an echoed correction show the address instead."""
    disguised = (
        "Please [Sign in](https://evil.example/login) to reset it, see [docs][1].\n\n[1]: https://evil.example/x"
    )
    core = socket_bot(FakeEngine(disguised, delay_s=0.02))
    slack.send_event(slack.user_message(DM, ALICE, "how do I reset my password?", channel_type="im"))
    shown = "Please [Sign in]\u2060(https://evil.example/login) to reset it, see [docs]\u2060[1].\n\n[1]\u2060: https://evil.example/x"
    reply = final_reply(slack, DM, shown)
    for update in updates_of(slack, reply["ts"]):
        for text in (update.params["text"], *(b.get("text", "") for b in update.params.get("blocks") or [])):
            assert "](" not in text and "][" not in text and "]:" not in text, text
    assert core.store.exchanges()[0].reply == disguised, "stored as written; only what is shown changes"
