"""Slack adapter: slack-bolt in Socket Mode (default) or HTTP mode.

Convert Slack events into the core's values (`Incoming`, `Reaction`), hand them to
`core.handle`, show what comes back. Whether to answer, corrections, votes, admin rights, dedup
and history are the core's; streaming is adapters/streaming.py's; this file only speaks Slack.
Bolt acks every event before the listener runs (listeners run on its thread pool), so the
3-second deadline holds however long an answer takes. That pool is small (5 threads) and slash
commands are acked from inside it, so answers, which wait for the model, leave it for the
adapter's own pool: a flood of questions never delays a vote, a correction or a command.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from slack_bolt import Ack, App, BoltContext, Respond
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from adapters.streaming import ReplyOnScreen, command_failed, followup_text, show_answer
from adapters.text import split_text
from bot.ops import metrics
from bot.ops.health import Readiness, in_background, wsgi_server
from bot.types import Answering, CommandResult, ConversationKey, Incoming, Reaction

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import Core

log = logging.getLogger(__name__)

PLATFORM = "slack"
MAX_CHARS = 3900  # Slack advises at most 4,000 characters a message; keep a margin
EVENTS_PATH = "/slack/events"
# Message subtypes that are still a person writing; edits, deletions, joins, bots are not.
USER_SUBTYPES = {None, "thread_broadcast", "file_share"}


def to_slack(text: str) -> str:
    """Escape &, < and >, Slack's control characters: a reply must never ping @channel or forge
    a link or a mention, whatever the model writes."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def from_slack(text: str) -> str:
    """Slack sends &, < and > escaped in message and command text; the core gets plain text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def message_ref(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


class _SlackScreen:
    """A reply's messages in one channel or thread (streaming.Screen)."""

    def __init__(self, client: WebClient, channel: str, thread_ts: str | None) -> None:
        self.client, self.channel, self.thread_ts = client, channel, thread_ts

    def post(self, text: str) -> str:
        posted = self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, text=to_slack(text))
        return message_ref(self.channel, posted["ts"])

    def edit(self, ref: str, text: str) -> None:
        self.client.chat_update(channel=self.channel, ts=ref.split(":", 1)[1], text=to_slack(text))

    def delete(self, ref: str) -> None:
        self.client.chat_delete(channel=self.channel, ts=ref.split(":", 1)[1])


@dataclass
class Running:
    """A started Slack app: `stop()` ends it; `url` is the events endpoint in HTTP mode."""

    stop: Callable[[], None]
    url: str = ""


class SlackAdapter:
    def __init__(self, core: Core, settings: Settings) -> None:
        self.core = core
        self.slack = settings.slack
        self._answers = ThreadPoolExecutor(settings.answer_threads, thread_name_prefix="slack-answer")
        client = WebClient(token=self.slack.bot_token, base_url=_with_slash(self.slack.api_url))
        # slack_sdk retries connection errors by default but 429s only when asked to.
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
        # Bolt calls auth.test here (through `client`, so through SLACK_API_URL too).
        self.app = App(client=client, signing_secret=self.slack.signing_secret, name="assistant")
        self.app.event("app_mention")(self.on_message)
        self.app.event("message")(self.on_message)
        self.app.event("reaction_added")(self.on_reaction)
        self.app.event("reaction_removed")(self.on_reaction)
        self.app.command(self.slack.command)(self.on_command)

    def on_message(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        """app_mention and message.* events: the core decides whether and how to answer."""
        if event.get("subtype") not in USER_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return  # edits, deletions, joins, bots (bolt already drops the bot's own messages)
        user, channel, ts = event["user"], event["channel"], event["ts"]
        raw = event.get("text") or ""
        mention = f"<@{context.bot_user_id or ''}>"
        in_thread = event.get("thread_ts")
        is_dm = event.get("channel_type") == "im"
        # In a DM the channel is the conversation unless the user opened a thread; elsewhere the
        # thread (or the message that starts one) is.
        thread = in_thread or ("" if is_dm else ts)
        outcome = self.core.handle(
            Incoming(
                PLATFORM,
                ConversationKey(PLATFORM, channel, thread),
                user,
                text=from_slack(raw.replace(mention, " ")).strip(),
                workspace=context.team_id or event.get("team") or "",
                is_dm=is_dm,
                mentions_bot=event["type"] == "app_mention" or mention in raw,
                in_thread=bool(in_thread),
                # app_mention and message.* both deliver a mention, and Slack retries: one reply.
                event_id=f"msg:{message_ref(channel, ts)}",
            )
        )
        if isinstance(outcome, Answering):  # the listener thread returns at once
            self._answers.submit(self._answer, client, outcome, channel, thread or None)
        elif isinstance(outcome, CommandResult):  # a correction
            self._post_result(client, outcome, channel, user, in_thread)

    def _answer(self, client: WebClient, answering: Answering, channel: str, thread_ts: str | None) -> None:
        """On the answers pool: a placeholder at once, then the answer streamed into it."""
        try:
            screen = ReplyOnScreen(_SlackScreen(client, channel, thread_ts), MAX_CHARS, self.slack.stream_interval_s)
            show_answer(self.core, answering, screen, PLATFORM, placeholder="…")
        except Exception:  # a pool keeps errors in a Future nobody reads: log them here
            log.exception("answering in %s failed", answering.message.conversation.as_str())

    def on_reaction(self, event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        item = event.get("item", {})
        # Only reactions on the bot's own messages can be votes; skip the rest before any write.
        if item.get("type") != "message" or event.get("item_user") != context.bot_user_id:
            return
        ref = message_ref(item["channel"], item["ts"])
        added = event["type"] == "reaction_added"
        workspace = context.team_id or body.get("team_id") or ""
        self.core.handle(Reaction(PLATFORM, ref, event["user"], event["reaction"], added, body["event_id"], workspace))

    def on_command(self, ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()  # first, always: Slack shows an error after 3 s; the answer follows via respond()
        user, channel = command["user_id"], command["channel_id"]
        text = from_slack(command.get("text") or "").strip() or "help"
        conversation = ConversationKey(PLATFORM, channel, "")
        try:
            result = self.core.handle(
                Incoming(PLATFORM, conversation, user, command=text, workspace=command.get("team_id") or "")
            )
        except Exception:
            result = command_failed(PLATFORM, text)
        if not isinstance(result, CommandResult):
            return
        # A response_url takes up to 5 messages: enough for any command's output.
        for part in split_text(result.text, MAX_CHARS)[:5]:
            respond(text=to_slack(part), response_type="ephemeral" if result.ephemeral else "in_channel")
        if result.followup is not None:
            result.followup.add_done_callback(lambda done: self._post_followup(client, respond, channel, done))

    def _post_followup(self, client: WebClient, respond: Respond, channel: str, done: Future[str]) -> None:
        text = to_slack(followup_text(done))
        try:
            client.chat_postMessage(channel=channel, text=text)
        except SlackApiError:
            # The bot cannot post in some channels (e.g. a DM between two people); the
            # response_url of the command still reaches its author.
            respond(text=text, response_type="ephemeral")

    def _post_result(
        self, client: WebClient, result: CommandResult, channel: str, user: str, thread_ts: str | None
    ) -> None:
        if result.ephemeral:
            client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=to_slack(result.text))
        else:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=to_slack(result.text))


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


# -- starting and running -------------------------------------------------------------------


def build_app(core: Core, settings: Settings) -> App:
    """The bolt App with every listener registered (calls auth.test)."""
    return SlackAdapter(core, settings).app


def _http_server(app: App, host: str, port: int) -> WSGIServer:
    return wsgi_server(SlackRequestHandler(app, EVENTS_PATH), host, port)


def start_socket_mode(app: App, settings: Settings) -> Running:
    """Connect over Socket Mode (apps.connections.open goes through app.client) without blocking."""
    handler = SocketModeHandler(app, settings.slack.app_token)
    handler.connect()
    return Running(stop=handler.close)


def start_http(app: App, settings: Settings, host: str = "0.0.0.0", port: int | None = None) -> Running:
    """Serve Slack's signed requests on `port` (default settings.slack.port; 0 picks a free one) without blocking."""
    server = _http_server(app, host, settings.slack.port if port is None else port)
    stop = in_background(server, "slack-http")
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    return Running(stop=stop, url=f"http://{shown}:{server.server_port}{EVENTS_PATH}")


def run(core: Core, settings: Settings, readiness: Readiness | None = None) -> None:
    """Run the Slack app until interrupted (`bot run`, maybe in a thread); `readiness` hears when it is up.

    Bad tokens are logged with what to check rather than raised: a thread would print only a
    traceback.
    """
    readiness = readiness or Readiness()
    if not settings.slack.allowed_teams:
        log.warning("answering in every Slack workspace that installs the app: SLACK_ALLOWED_TEAMS limits it")
    try:
        app = build_app(core, settings)  # auth.test checks SLACK_BOT_TOKEN
        if settings.slack.mode == "http":
            server = _http_server(app, "0.0.0.0", settings.slack.port)
            log.info("Slack HTTP mode: listening on :%d%s", settings.slack.port, EVENTS_PATH)
            readiness.up(PLATFORM)
            try:
                server.serve_forever()
            finally:
                server.server_close()
        else:
            log.info("Slack Socket Mode: connecting through %s", settings.slack.api_url)
            handler = SocketModeHandler(app, settings.slack.app_token)
            try:
                handler.connect()  # apps.connections.open checks SLACK_APP_TOKEN
                readiness.up(PLATFORM)
                threading.Event().wait()  # the handler's own threads serve; it reconnects by itself
            finally:
                handler.close()
    except (BoltError, SlackApiError) as exc:
        metrics.PLATFORM_ERRORS.labels(PLATFORM).inc()
        log.error(
            "Slack could not start: %s. Check SLACK_BOT_TOKEN, SLACK_APP_TOKEN and SLACK_API_URL (%s); "
            "see docs/slack.md",
            exc,
            settings.slack.api_url,
        )
