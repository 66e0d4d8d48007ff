"""The Slack adapter end to end: the real slack-bolt app, over loopback, against the emulator.

Nothing of bolt or slack_sdk is mocked: Socket Mode runs over a real websocket, HTTP mode over
real signed requests, and every Web API call reaches the emulator, which records it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.slack import Running, build_app, start_http, start_socket_mode, to_slack
from adapters.text import split_text
from bot.config import Settings, SlackSettings
from bot.core import Core
from bot.types import CommandResult, ConversationKey
from tests.emulators.slack_api import MAX_TEXT, ApiCall, SlackEmulator
from tests.fakes import FakeBackend

ADMIN, ALICE, BOB = "UADMIN", "UALICE", "UBOB"
CHANNEL, DM = "C0GENERAL", "D0ALICE"
REPLY = "Paris is the capital of France. It has been since the tenth century, more or less."
INTERVAL = 0.1  # stream_interval_s in tests: short, yet long enough to see throttling


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emulator:
        emulator.add_user(ALICE, "alice")
        emulator.add_user(BOB, "bob")
        yield emulator


def slack_overrides(slack: SlackEmulator, **extra: Any) -> dict[str, Any]:
    return {
        "slack__bot_token": slack.bot_token,
        "slack__app_token": slack.app_token,
        "slack__signing_secret": slack.signing_secret,
        "slack__api_url": slack.api_url,
        "slack__stream_interval_s": INTERVAL,
        **extra,
    }


StartBot = Callable[..., Core]


@pytest.fixture
def socket_bot(slack: SlackEmulator, make_core: Callable[..., Core]) -> Iterator[StartBot]:
    """start(generator=None, wrap=None, **settings) -> Core, served over Socket Mode.

    `wrap` puts a thin layer around the core (to slow or script its commands)."""
    running: list[Running] = []

    def start(generator: FakeBackend | None = None, wrap: Callable[[Core], Any] | None = None, **extra: Any) -> Core:
        core = make_core(generator or FakeBackend(REPLY), admins=(f"slack:{ADMIN}",), **slack_overrides(slack, **extra))
        running.append(start_socket_mode(build_app(wrap(core) if wrap else core, core.settings), core.settings))
        slack.wait_connected()
        return core

    yield start
    for app in running:
        app.stop()


@pytest.fixture
def http_bot(slack: SlackEmulator, make_core: Callable[..., Core]) -> Iterator[tuple[Core, str]]:
    """A core served in HTTP mode; yields (core, the events URL)."""
    core = make_core(FakeBackend(REPLY), admins=(f"slack:{ADMIN}",), **slack_overrides(slack, slack__mode="http"))
    running = start_http(build_app(core, core.settings), core.settings, host="127.0.0.1", port=0)
    yield core, running.url
    running.stop()


# -- helpers -----------------------------------------------------------------------------------


def final_reply(slack: SlackEmulator, channel: str, text: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until a bot message in `channel` shows `text` (the streamed reply is complete)."""
    return slack.wait_for(
        lambda: next((m for m in slack.bot_messages(channel) if m["text"] == text), None),
        timeout,
        f"a bot message {text[:40]!r}… in {channel}",
    )


def updates_of(slack: SlackEmulator, ts: str) -> list[ApiCall]:
    return [c for c in slack.ok_calls("chat.update") if c.params["ts"] == ts]


def posts_in(slack: SlackEmulator, channel: str) -> list[ApiCall]:
    return [c for c in slack.ok_calls("chat.postMessage") if c.params["channel"] == channel]


def exchange_of(slack: SlackEmulator, core: Core, channel: str, ts: str) -> str:
    """The exchange a bot message is linked to (the link may trail the last update by a moment)."""
    return slack.wait_for(
        lambda: core.exchange_for_message("slack", f"{channel}:{ts}"), 5.0, f"a link from {channel}:{ts}"
    )


# -- messages ----------------------------------------------------------------------------------


def test_mention_streams_a_reply_in_the_thread(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(FakeBackend(REPLY, delay_s=0.05))
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


def test_direct_message_is_answered_and_the_dm_is_the_conversation(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
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
    core = socket_bot(FakeBackend(long_reply), max_new_tokens=4000, context_tokens=8192)
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
    socket_bot(FakeBackend(REPLY, delay_s=0.08))  # slow enough that the second request must wait
    for user, channel in ((ALICE, CHANNEL), (BOB, "C0OTHER")):
        slack.send_event(slack.user_message(channel, user, "<@UBOT> question", mention=True))
    for channel in (CHANNEL, "C0OTHER"):
        final_reply(slack, channel, REPLY)
    shown = [text for c in (CHANNEL, "C0OTHER") for m in slack.bot_messages(c) for text in m["edits"]]
    assert any(text.startswith("⏳ Queued: 1 ahead of you") for text in shown), shown


def test_slack_markup_is_escaped_both_ways(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(FakeBackend("Ping <!channel> & <@UADMIN> => now"))
    # Slack escapes &, < and > in what users type; the core must get the plain text.
    slack.send_event(slack.user_message(DM, ALICE, "is 1 &lt; 2 &amp;&amp; 3 &gt; 2?", channel_type="im"))
    final_reply(slack, DM, "Ping &lt;!channel&gt; &amp; &lt;@UADMIN&gt; =&gt; now")  # no @channel, no mention
    assert core.store.exchanges()[0].user_text == "is 1 < 2 && 3 > 2?"

    slack.wait_ack(slack.send_command("/assistant", "teach What is &lt;b&gt;? =&gt; Bold", ADMIN, CHANNEL))
    answer = slack.wait_for(slack.responses, what="the teach answer")[0]
    assert answer.body["text"].startswith("Learned"), answer.body["text"]
    assert "&lt;b&gt;" in answer.body["text"] and "<b>" not in answer.body["text"]
    assert [e.input for e in core.examples.list()] == ["What is <b>?"]


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
    assert len(core.generation.backend.calls) == 1, "a correction is not answered as a question"


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


def test_slash_command_acks_at_once_then_answers_an_admin_privately(slack: SlackEmulator, socket_bot: StartBot) -> None:
    socket_bot(wrap=lambda core: SlowCommands(core, delay_s=2.0))
    envelope = slack.send_command("/assistant", "status", ADMIN, CHANNEL)
    ack = slack.wait_ack(envelope)
    assert ack.latency_s < 2.0, "the ack does not wait for the work (Slack gives up after 3 s)"
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
    core = socket_bot()
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
    core = socket_bot(FakeBackend(REPLY, gate=gate), max_waiting_per_user=6)
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

        refused = slack.wait_for(
            lambda: (
                len(texts := [m["text"] for m in slack.bot_messages(DM) if m["text"].startswith("⚠️")]) == 2 and texts
            ),
            what="the two questions over the cap to be refused",
        )
        assert all(text.startswith("⚠️ You already have 6 questions waiting; I'll get to them") for text in refused)
        slack.wait_for(lambda: core.generation.queued() == 5, what="Alice's six: 1 running, 5 queued")
        assert slack.stays(lambda: core.generation.queued() == 5), "over the cap, nothing more is queued"
    finally:
        gate.set()
    slack.wait_for(
        lambda: len([m for m in slack.bot_messages(DM) if m["text"] == REPLY]) == 6, what="Alice's six answers"
    )
    assert core.store.count_exchanges() == 7, "refused questions are not stored"


# -- delivery: retries and rate limits ---------------------------------------------------------


def test_a_retried_event_gets_one_reply(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(FakeBackend(REPLY, delay_s=0.02))
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> once please", mention=True)
    slack.send_event(mention, event_id="EvONCE")
    final_reply(slack, CHANNEL, REPLY)
    for attempt in (1, 2):
        retry = slack.send_event(mention, event_id="EvONCE", retry_attempt=attempt, retry_reason="timeout")
        assert slack.wait_ack(retry).latency_s < 3.0, "a retry is acked too, or Slack keeps retrying"
    assert slack.stays(lambda: len(posts_in(slack, CHANNEL)) == 1)
    assert core.store.count_exchanges() == 1


def test_rate_limited_call_is_retried_after_retry_after(slack: SlackEmulator, socket_bot: StartBot) -> None:
    socket_bot()
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    slack.send_event(slack.user_message(CHANNEL, ALICE, "<@UBOT> hi", mention=True))
    final_reply(slack, CHANNEL, REPLY)
    limited, ok = slack.calls("chat.postMessage")
    assert (limited.status, ok.status) == (429, 200)
    assert ok.at - limited.at >= 1.0, "Retry-After is honoured"
    assert ok.params == limited.params


# -- HTTP mode ---------------------------------------------------------------------------------


def test_http_mode_answers_signed_events_once(slack: SlackEmulator, http_bot: tuple[Core, str]) -> None:
    core, url = http_bot
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> over http", mention=True)
    first = slack.post_event(url, mention, event_id="EvHTTP")
    assert first.status == 200 and first.latency_s < 3.0
    reply = final_reply(slack, CHANNEL, REPLY)
    assert reply["thread_ts"] == mention["ts"]

    retry = slack.post_event(url, mention, event_id="EvHTTP", retry_num=1, retry_reason="http_timeout")
    assert retry.status == 200
    assert slack.stays(lambda: len(posts_in(slack, CHANNEL)) == 1)
    assert core.store.count_exchanges() == 1


def test_http_mode_rejects_bad_signatures_and_stale_timestamps(
    slack: SlackEmulator, http_bot: tuple[Core, str]
) -> None:
    core, url = http_bot
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> let me in", mention=True)
    assert slack.post_event(url, mention, secret="not-the-secret").status == 401
    six_minutes_ago = int(time.time()) - 6 * 60
    assert slack.post_event(url, mention, timestamp=six_minutes_ago).status == 401
    assert slack.post_command(url, "/assistant", "help", ALICE, CHANNEL, secret="nope").status == 401
    assert slack.stays(lambda: not posts_in(slack, CHANNEL) and not slack.responses())
    assert core.store.count_exchanges() == 0


def test_http_mode_url_verification_and_slash_command(slack: SlackEmulator, http_bot: tuple[Core, str]) -> None:
    _, url = http_bot
    challenge = b'{"token": "t", "challenge": "c0ffee", "type": "url_verification"}'
    verified = slack.post_signed(url, challenge, "application/json")
    assert verified.status == 200 and "c0ffee" in verified.body

    delivered = slack.post_command(url, "/assistant", "status", ADMIN, CHANNEL)
    assert delivered.status == 200 and delivered.latency_s < 3.0
    answer = slack.wait_for(slack.responses, what="the command's answer")[0]
    assert answer.body["response_type"] == "ephemeral" and "Model:" in answer.body["text"]


def test_run_explains_a_bad_token_instead_of_crashing(
    slack: SlackEmulator, make_core: Callable[..., Core], caplog: pytest.LogCaptureFixture
) -> None:
    from adapters.slack import run

    core = make_core(FakeBackend(REPLY), **slack_overrides(slack, slack__app_token="xapp-revoked"))
    run(core, core.settings)  # returns: Socket Mode could not open a connection
    assert "Slack could not start" in caplog.text and "SLACK_APP_TOKEN" in caplog.text
    assert [c.method for c in slack.calls()] == ["auth.test", "apps.connections.open"]


# -- the manifest ------------------------------------------------------------------------------


def test_manifest_subscribes_to_what_the_adapter_handles() -> None:
    manifest = yaml.safe_load((Path(__file__).parent.parent / "deploy" / "slack-manifest.yaml").read_text())
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == [SlackSettings().command]
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        "app_mention", "message.im", "message.channels", "message.groups", "reaction_added", "reaction_removed"
    }  # fmt: skip
    needed = {"app_mentions:read", "chat:write", "im:history", "channels:history", "groups:history",
              "reactions:read", "commands"}  # fmt: skip
    assert needed <= set(manifest["oauth_config"]["scopes"]["bot"])
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True, "people must be able to DM the bot"


# -- splitting (pure) --------------------------------------------------------------------------


def test_split_text_prefers_paragraphs_then_sentences_then_words() -> None:
    assert split_text("short", 3900) == ["short"]
    assert split_text("a" * 30 + "\n\n" + "b" * 30, 40) == ["a" * 30, "b" * 30]
    assert split_text("One two three. Four five six seven.", 20) == ["One two three.", "Four five six seven."]
    assert split_text("alpha beta gamma delta", 12) == ["alpha beta", "gamma delta"]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_split_text_keeps_shown_parts_stable_while_a_reply_grows() -> None:
    text = " ".join(f"Word{i}." if i % 7 == 0 else f"word{i}" for i in range(400))
    final = split_text(text, 300)
    for end in range(50, len(text), 37):
        parts = split_text(text[:end], 300)
        assert parts[:-1] == final[: len(parts) - 1], "a finished part never changes"


# -- the real default model --------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_answers_a_mention_and_takes_a_vote(slack: SlackEmulator, real_core: Core) -> None:
    # real_core is shared across tests: point only this app's copy of the settings at the emulator.
    base: Settings = real_core.settings
    fields = {key.removeprefix("slack__"): value for key, value in slack_overrides(slack).items()}
    settings = base.model_copy(update={"slack": base.slack.model_copy(update=fields)})
    running = start_socket_mode(build_app(real_core, settings), settings)
    try:
        slack.wait_connected()
        mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> What is the capital of France?", mention=True)
        slack.send_event(mention)

        def answered() -> dict[str, Any] | None:
            for m in slack.thread(CHANNEL, mention["ts"]):
                ref = f"{CHANNEL}:{m['ts']}"
                if m.get("bot_id") and real_core.exchange_for_message("slack", ref):
                    return m
            return None

        # The exchange is linked once it is stored, just before the last update.
        reply = slack.wait_for(answered, timeout=300, what="the real model's reply")
        exchange = real_core.store.exchange(exchange_of(slack, real_core, CHANNEL, reply["ts"]))
        assert exchange is not None and exchange.reply.strip()
        reply = final_reply(slack, CHANNEL, to_slack(exchange.reply.strip()))  # exactly the stored reply
        assert reply["edits"][0] == "…", "a placeholder came first"

        slack.send_event(slack.reaction_event(CHANNEL, reply["ts"], BOB, "+1"))
        slack.wait_for(lambda: real_core.store.score(exchange.id) == 1, what="the vote on the real reply")
    finally:
        running.stop()


def test_emulator_rejects_wrong_tokens(slack: SlackEmulator) -> None:
    """The emulator checks tokens as Slack does, so a misconfigured app fails here too."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    with pytest.raises(SlackApiError, match="invalid_auth"):
        WebClient(token="xoxb-wrong", base_url=slack.api_url).auth_test()
    assert WebClient(token=slack.bot_token, base_url=slack.api_url).auth_test()["user_id"] == "UBOT"
