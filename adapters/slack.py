"""Slack adapter: slack-bolt in Socket Mode (default) or HTTP mode.

Convert Slack events into the core's values, call the core, send the result back. Votes,
corrections, admin rights, dedup and history live in the core; this file only speaks Slack.
Bolt acks every event before the listener runs (listeners run on its thread pool), so the
3-second deadline holds however long an answer takes. That pool is small (5 threads) and slash
commands are acked from inside it, so answers, which wait for the model, leave it for the
adapter's own pool: a flood of questions never delays a vote, a correction or a command.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import Ack, App, BoltContext, Respond
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from adapters.text import split_text
from bot.types import (
    CommandResult,
    ConversationKey,
    Done,
    Message,
    Queued,
    Token,
    UserError,
    dm_scope,
    workspace_scope,
)

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


class _StreamedReply:
    """One reply as Slack shows it: a placeholder posted at once, then chat.update calls no
    closer together than `interval` (chat.update is rate tier 3); the text beyond one
    message's limit continues in further messages in the same thread."""

    def __init__(self, client: WebClient, channel: str, thread_ts: str | None, interval: float) -> None:
        self.client, self.channel, self.thread_ts, self.interval = client, channel, thread_ts, interval
        self.parts: list[tuple[str, str]] = []  # (ts, text shown)
        self.last = 0.0
        self.show("…", wait=False)

    def show(self, text: str, *, wait: bool) -> None:
        """Show `text`; when it is too soon, skip it, or with `wait` wait for the interval."""
        pause = self.last + self.interval - time.monotonic()
        if pause > 0:
            if not wait:
                return
            time.sleep(pause)
        for i, chunk in enumerate(split_text(text, MAX_CHARS)):
            if i < len(self.parts):
                ts, shown = self.parts[i]
                if chunk != shown:
                    self.client.chat_update(channel=self.channel, ts=ts, text=to_slack(chunk))
                    self.parts[i] = (ts, chunk)
            else:
                posted = self.client.chat_postMessage(
                    channel=self.channel, thread_ts=self.thread_ts, text=to_slack(chunk)
                )
                self.parts.append((posted["ts"], chunk))
        self.last = time.monotonic()

    @property
    def refs(self) -> list[str]:
        return [message_ref(self.channel, ts) for ts, _ in self.parts]


@dataclass
class Running:
    """A started Slack app: `stop()` ends it; `url` is the events endpoint in HTTP mode."""

    stop: Callable[[], None]
    url: str = ""


class SlackAdapter:
    def __init__(self, core: Core, settings: Settings) -> None:
        self.core = core
        self.slack = settings.slack
        self.prefix = settings.correction_prefix.lower()
        self._names: dict[str, str] = {}
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

    # -- messages ---------------------------------------------------------------------------

    def on_message(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        """app_mention and message.* events: answer when addressed, or take a correction."""
        if event.get("subtype") not in USER_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return  # edits, deletions, joins, bots (bolt already drops the bot's own messages)
        user, channel, ts = event["user"], event["channel"], event["ts"]
        bot_user = context.bot_user_id or ""
        mention = f"<@{bot_user}>"
        text = from_slack((event.get("text") or "").replace(mention, " ")).strip()
        in_thread = event.get("thread_ts")
        is_dm = event.get("channel_type") == "im"
        # In a DM the channel is the conversation unless the user opened a thread; elsewhere the
        # thread (or the message that starts one) is.
        thread = in_thread or ("" if is_dm else ts)
        conversation = ConversationKey(PLATFORM, channel, thread)
        addressed = (
            is_dm
            or event["type"] == "app_mention"
            or mention in (event.get("text") or "")
            or bool(in_thread and self.core.knows_conversation(conversation))
        )
        # A correction is a thread reply to the bot that starts with the prefix (mention or not).
        exchange = None
        if in_thread and text.lower().startswith(self.prefix):
            exchange = self._corrected_exchange(client, channel, in_thread, bot_user)
        if not (addressed or exchange) or not text:
            return
        # app_mention and message.* both deliver a mention, and Slack retries: one message, one reply.
        if not self.core.claim_event(PLATFORM, f"msg:{message_ref(channel, ts)}"):
            return
        if exchange:
            try:
                result = self.core.correct(PLATFORM, user, exchange, text)  # the core drops the prefix
            except UserError as exc:
                result = CommandResult(str(exc), ok=False)
            self._post_result(client, result, channel, user, in_thread)
            return
        # What this message teaches (votes, corrections) is seen in its workspace, or only in its DM.
        team = context.team_id or event.get("team") or ""
        scope = dm_scope(PLATFORM, channel) if is_dm else workspace_scope(PLATFORM, team or channel)
        # Claimed above, so a retry is still dropped; the listener thread returns at once.
        self._answers.submit(self._answer, client, Message(conversation, user, text, scope=scope))

    def _answer(self, client: WebClient, message: Message) -> None:
        """On the answers pool: post a placeholder at once, then stream the core's answer into it."""
        conversation = message.conversation
        try:
            thread = conversation.thread or None
            reply = _StreamedReply(client, conversation.channel, thread, self.slack.stream_interval_s)
            self._stream(reply, replace(message, user_name=self._user_name(client, message.user_id)))
        except Exception:  # a pool keeps errors in a Future nobody reads: log them here
            log.exception("answering in %s failed", conversation.as_str())

    def _corrected_exchange(self, client: WebClient, channel: str, thread_ts: str, bot_user: str) -> str | None:
        """The exchange of the bot's latest reply in the thread: what a correction there is about."""
        try:
            replies = client.conversations_replies(channel=channel, ts=thread_ts, limit=200)["messages"]
        except SlackApiError as exc:
            log.info("cannot read thread %s in %s: %s", thread_ts, channel, exc.response.get("error"))
            return None
        for msg in reversed(replies):
            if msg.get("user") == bot_user:
                found = self.core.exchange_for_message(PLATFORM, message_ref(channel, msg["ts"]))
                if found:
                    return found
        return None

    def _stream(self, reply: _StreamedReply, message: Message) -> None:
        """Fill the placeholder `reply` (already posted) with the core's streamed answer."""
        text = ""
        try:
            for item in self.core.answer_stream(message):
                if isinstance(item, Queued) and not text:
                    reply.show(f"⏳ Queued: {item.position} ahead of you…", wait=True)
                elif isinstance(item, Token):
                    text += item.text
                    reply.show(text + " …", wait=False)
                elif isinstance(item, Done):
                    # Link what is on screen before the last update, so that no vote can miss it.
                    shown = reply.refs
                    for ref in shown:
                        self.core.link_message(item.reply.exchange_id, PLATFORM, ref)
                    reply.show(item.reply.text or "(no answer)", wait=True)
                    for ref in reply.refs[len(shown) :]:
                        self.core.link_message(item.reply.exchange_id, PLATFORM, ref)
        except UserError as exc:  # e.g. an oversized message: say why, in place of the answer
            reply.show(f"⚠️ {exc}", wait=True)
        except Exception:
            log.exception("answering %s failed", message.conversation.as_str())
            reply.show((text + "\n\n" if text else "") + "⚠️ Sorry, something went wrong.", wait=True)

    def _user_name(self, client: WebClient, user: str) -> str:
        if user not in self._names:
            try:
                info = client.users_info(user=user)["user"]
                self._names[user] = info.get("real_name") or info.get("name") or ""
            except SlackApiError:
                return ""  # a name is a nicety; try again next time
        return self._names[user]

    # -- reactions --------------------------------------------------------------------------

    def on_reaction(self, event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        item = event.get("item", {})
        # Only reactions on the bot's own messages can be votes; skip the rest before any write.
        if item.get("type") != "message" or event.get("item_user") != context.bot_user_id:
            return
        if not self.core.claim_event(PLATFORM, body["event_id"]):
            return
        added = event["type"] == "reaction_added"
        self.core.react(PLATFORM, message_ref(item["channel"], item["ts"]), event["user"], event["reaction"], added)

    # -- the slash command ------------------------------------------------------------------

    def on_command(self, ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()  # first, always: Slack shows an error after 3 s; the answer follows via respond()
        user, channel = command["user_id"], command["channel_id"]
        text = from_slack(command.get("text") or "").strip() or "help"
        try:
            result = self.core.command(PLATFORM, user, text, ConversationKey(PLATFORM, channel, ""))
        except Exception:
            log.exception("Slack command %r failed", text)
            result = CommandResult("Sorry, that command failed; the logs say why.", ok=False)
        # A response_url takes up to 5 messages: enough for any command's output.
        for part in split_text(result.text, MAX_CHARS)[:5]:
            respond(text=to_slack(part), response_type="ephemeral" if result.ephemeral else "in_channel")
        if result.followup is not None:
            result.followup.add_done_callback(lambda done: self._post_followup(client, respond, channel, done))

    def _post_followup(self, client: WebClient, respond: Respond, channel: str, done: Future[str]) -> None:
        if done.cancelled():
            text = "⚠️ Cancelled."
        elif (exc := done.exception()) is not None:  # the work failed: say so where it was asked
            text = f"⚠️ Failed: {exc}"
        else:
            text = done.result()
        try:
            client.chat_postMessage(channel=channel, text=to_slack(text))
        except SlackApiError:
            # The bot cannot post in some channels (e.g. a DM between two people); the
            # response_url of the command still reaches its author.
            respond(text=to_slack(text), response_type="ephemeral")

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


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _http_server(app: App, host: str, port: int) -> WSGIServer:
    handler = SlackRequestHandler(app, EVENTS_PATH)
    return make_server(host, port, handler, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)


def start_socket_mode(app: App, settings: Settings) -> Running:
    """Connect over Socket Mode (apps.connections.open goes through app.client) without blocking."""
    handler = SocketModeHandler(app, settings.slack.app_token)
    handler.connect()
    return Running(stop=handler.close)


def start_http(app: App, settings: Settings, host: str = "0.0.0.0", port: int | None = None) -> Running:
    """Serve Slack's signed requests on `port` (default settings.slack.port; 0 picks a free one) without blocking."""
    server = _http_server(app, host, settings.slack.port if port is None else port)
    threading.Thread(target=server.serve_forever, name="slack-http", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    shown = "127.0.0.1" if host == "0.0.0.0" else host
    return Running(stop=stop, url=f"http://{shown}:{server.server_port}{EVENTS_PATH}")


def run(core: Core, settings: Settings) -> None:
    """Run the Slack app until interrupted (`bot run`, maybe in a thread).

    Bad tokens are logged with what to check rather than raised: a thread would print only a
    traceback.
    """
    try:
        app = build_app(core, settings)  # auth.test checks SLACK_BOT_TOKEN
        if settings.slack.mode == "http":
            server = _http_server(app, "0.0.0.0", settings.slack.port)
            log.info("Slack HTTP mode: listening on :%d%s", settings.slack.port, EVENTS_PATH)
            try:
                server.serve_forever()
            finally:
                server.server_close()
        else:
            log.info("Slack Socket Mode: connecting through %s", settings.slack.api_url)
            handler = SocketModeHandler(app, settings.slack.app_token)
            try:
                handler.start()  # apps.connections.open checks SLACK_APP_TOKEN
            finally:
                handler.close()
    except (BoltError, SlackApiError) as exc:
        log.error(
            "Slack could not start: %s. Check SLACK_BOT_TOKEN, SLACK_APP_TOKEN and SLACK_API_URL (%s); "
            "see docs/slack.md",
            exc,
            settings.slack.api_url,
        )
