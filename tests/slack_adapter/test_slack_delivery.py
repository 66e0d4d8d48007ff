"""The Slack adapter: retried events and rate limits, HTTP mode, start-up errors, the app manifest,
text splitting, the real default model, and the emulator's own token check."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from adapters.slack.app import build_app, start_socket_mode, to_slack
from adapters.text import split_text
from bot.config import Settings, SlackSettings
from bot.core import Core
from tests.conftest import REPO
from tests.emulators.slack_api import SlackEmulator
from tests.fakes import FakeEngine
from tests.slack_adapter.helpers import (
    ADMIN,
    ALICE,
    BOB,
    CHANNEL,
    REPLY,
    StartBot,
    exchange_of,
    final_reply,
    posts_in,
    slack_overrides,
)

# -- delivery: retries and rate limits ---------------------------------------------------------


def test_a_retried_event_gets_one_reply(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(FakeEngine(REPLY, delay_s=0.02))
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
    from adapters.slack.app import run

    core = make_core(FakeEngine(REPLY), **slack_overrides(slack, slack__app_token="xapp-revoked"))
    run(core, core.settings)  # returns: Socket Mode could not open a connection
    assert "Slack could not start" in caplog.text and "SLACK_APP_TOKEN" in caplog.text
    assert [c.method for c in slack.calls()] == ["auth.test", "apps.connections.open"]


# -- the manifest ------------------------------------------------------------------------------


def test_manifest_subscribes_to_what_the_adapter_handles() -> None:
    manifest = yaml.safe_load((REPO / "deploy" / "slack-manifest.yaml").read_text())
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == [SlackSettings().command]
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        "app_mention", "message.im", "message.channels", "message.groups", "message.mpim", "reaction_added",
        "reaction_removed", "app_home_opened", "app_context_changed", "agent_session_stopped",
    }  # fmt: skip
    # conversations.info (is this channel private?) needs the :read scopes of each kind, users.info (is
    # who reacted a person?) users:read; nothing else is asked for (the adapter adds no reactions and
    # opens no conversations).
    needed = {"app_mentions:read", "chat:write", "im:history", "channels:history", "groups:history",
              "mpim:history", "channels:read", "groups:read", "mpim:read", "reactions:read", "users:read",
              "commands", "assistant:write"}  # fmt: skip
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True, "people must be able to DM the bot"
    assert manifest["settings"]["interactivity"]["is_enabled"] is True, "the feedback buttons and the modal"
    # A new app gets the agent experience (slack.agent, on by default); the legacy side panel's lines
    # are there, commented out, for apps that still have assistant_view.
    assert manifest["features"]["agent_view"]["agent_description"] and SlackSettings().agent
    assert len(manifest["features"]["agent_view"]["agent_description"]) <= 300
    text = (REPO / "deploy" / "slack-manifest.yaml").read_text()
    assert "assistant_view" not in manifest["features"] and "# assistant_view:" in text
    assert "# - assistant_thread_started" in text


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
    given = slack_overrides(slack)  # `slack__*` and `tuning__*` values: each goes to its section
    sections = {
        name: getattr(base, name).model_copy(
            update={key.removeprefix(f"{name}__"): value for key, value in given.items() if key.startswith(f"{name}__")}
        )
        for name in ("slack", "tuning")
    }
    settings = base.model_copy(update=sections)
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
