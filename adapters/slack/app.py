"""Slack adapter: slack-bolt in Socket Mode (default) or HTTP mode.

Convert Slack events into the core's values (`Incoming`, `Reaction`), hand them to
`core.handle`, show what comes back. Whether to answer, corrections, votes, admin rights, dedup
and history are the core's; showing a reply is adapters/streaming.py's `show_answer`, over
Slack's native stream (stream.py) or its edited messages (screen.py); this file only speaks Slack.
The app runs with bolt's `process_before_response`: a listener returns before its event is acked
(in Socket Mode and HTTP mode alike), so a vote, a correction or a `teach` is written durably
before Slack hears it arrived (Slack never redelivers an acked event). Listeners therefore only
decide and write, which takes milliseconds of Slack's 3 seconds: answers, which wait for the
model, go to the adapter's answer pool, and what is posted back (command output, confirmations)
to its reply pool, so a flood of questions never delays a vote, a correction or a command.
HTTP serving and its guards are http.py's; what is written (escaping, Markdown, the buttons)
format.py's; the buttons' clicks and the correction modal feedback.py's; the AI app side panel
assistant.py's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from adapters.command_output import command_failed, followup_text
from adapters.edit_budget import EditBudget
from adapters.slack import PLATFORM
from adapters.slack.agent import AgentExperience
from adapters.slack.assistant import build_assistant
from adapters.slack.directory import SlackDirectory
from adapters.slack.feedback import PRIVATE_KINDS, FeedbackButtons
from adapters.slack.format import context_footer, from_slack, message_ref, to_slack
from adapters.slack.http import EVENTS_PATH, Running, http_server
from adapters.slack.screen import MAX_CHARS, SdkRetries, SlackScreen
from adapters.slack.socket_mode import connect_socket_mode
from adapters.slack.stream import NativeStream, StreamChoice, Target
from adapters.streaming import ReplyOnScreen, show_answer
from adapters.text import split_text
from bot.ops import metrics
from bot.ops.health import Readiness
from bot.types import Answering, CommandResult, ConversationKey, Incoming, Outcome, Reaction

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import Core

log = logging.getLogger(__name__)

# Message subtypes that are still a person writing; edits, deletions, joins, bots are not.
USER_SUBTYPES = {None, "thread_broadcast", "file_share"}
# How long a command may run before its ack goes out anyway (Slack shows an error after 3 s);
# its writes take milliseconds, so they are durable before the ack unless something is stuck.
ACK_WAIT_S = 2.0
REPLY_THREADS = 8
# chat.update is rate tier 3, about 50 a minute per workspace per app; the burst leaves room for
# the final edits, which always go (they overdraw the budget and later intermediate edits wait).
EDITS_PER_MINUTE, EDIT_BURST = 50, 10
# chat.appendStream is tier 4, about 100 a minute per workspace.
APPENDS_PER_MINUTE, APPEND_BURST = 100, 10
__all__ = ["ACK_WAIT_S", "SlackAdapter", "build_app", "run", "start_socket_mode", "to_slack"]


class SlackAdapter:
    def __init__(self, core: Core, settings: Settings) -> None:
        self.core = core
        self.slack = settings.slack
        self.interval_s = settings.tuning.slack_stream_interval_s  # between edits or appends of a reply
        self._answers = ThreadPoolExecutor(settings.answer_threads, thread_name_prefix="slack-answer")
        self._replies = ThreadPoolExecutor(REPLY_THREADS, thread_name_prefix="slack-reply")
        self.directory = SlackDirectory()
        # One budget per workspace, shared by every reply this process shows.
        self.edits = EditBudget(EDITS_PER_MINUTE, EDIT_BURST)
        self.appends = EditBudget(APPENDS_PER_MINUTE, APPEND_BURST)
        self.streams = StreamChoice(settings.tuning.slack_streaming)
        client = WebClient(token=self.slack.bot_token, base_url=_with_slash(self.slack.api_url))
        # slack_sdk retries connection errors by default but 429s only when asked to.
        client.retry_handlers.append(SdkRetries(max_retry_count=3))
        # Bolt calls auth.test here (through `client`, so through SLACK_API_URL too).
        self.app = App(
            client=client, signing_secret=self.slack.signing_secret, name="assistant", process_before_response=True
        )
        self.app.event("app_mention")(self.on_message)
        self.app.event("message")(self.on_message)
        self.app.event("reaction_added")(self.on_reaction)
        self.app.event("reaction_removed")(self.on_reaction)
        self.app.command(self.slack.command)(self.on_command)
        FeedbackButtons(core, lambda *args: _later(self._replies, *args), self.directory.channel_kind).register(
            self.app
        )
        # The agent experience (agent_view), or the legacy side panel (assistant_view) of apps that have it.
        self.agent = AgentExperience(core, lambda *a: _later(self._replies, *a)) if self.slack.agent else None
        if self.slack.assistant:
            self.agent = None
            self.app.assistant(build_assistant(core, self.handle_message, lambda work: _later(self._replies, work)))
        elif self.agent is not None:
            self.agent.register(self.app)

    def on_message(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        """app_mention and message.* events: the core decides whether and how to answer."""
        self.handle_message(event, context, client)

    def handle_message(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> Outcome | None:
        if event.get("subtype") not in USER_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return None  # edits, deletions, joins, bots (bolt already drops the bot's own messages)
        user, channel, ts = event["user"], event["channel"], event["ts"]
        raw = event.get("text") or ""
        mention = f"<@{context.bot_user_id or ''}>"
        in_thread = event.get("thread_ts")
        kind = self.directory.channel_kind(client, channel, event.get("channel_type"))
        is_dm = kind == "im"
        # The thread (or the message that starts one) is the conversation; in a DM without the agent
        # experience (which answers every DM in a thread), the channel is, unless the user opened one.
        thread = in_thread or ("" if is_dm and self.agent is None else ts)
        team = context.team_id or event.get("team") or ""
        outcome = self.core.handle(
            Incoming(
                PLATFORM,
                ConversationKey(PLATFORM, channel, thread),
                user,
                text=from_slack(raw.replace(mention, " ")).strip(),
                workspace=team,
                is_dm=is_dm,
                private_to=channel if kind in PRIVATE_KINDS else "",
                mentions_bot=event["type"] == "app_mention" or mention in raw,
                in_thread=bool(in_thread),
                # app_mention and message.* both deliver a mention, and Slack retries: one reply.
                event_id=f"msg:{message_ref(channel, ts)}",
            )
        )
        if isinstance(outcome, Answering):  # the listener returns at once: the ack never waits for it
            _later(self._answers, self._answer, client, outcome, Target(
                client, channel, thread, team, user, self.interval_s, self.appends))  # fmt: skip
        elif isinstance(outcome, CommandResult):  # a correction, already stored
            _later(self._replies, self._post_result, client, outcome, channel, user, in_thread)
        return outcome

    def _answer(self, client: WebClient, answering: Answering, to: Target) -> None:
        """On the answers pool: streamed natively where the workspace can, else (or when Slack
        refuses the stream) a placeholder at once and the answer edited into it."""
        screen = SlackScreen(client, to.channel, to.thread_ts or None)
        edited = ReplyOnScreen(screen, MAX_CHARS, self.interval_s, self.edits, to.team, "…", context_footer)
        native = [NativeStream(to, self.streams)] if self.streams.native(to.team, to.thread_ts) else []
        session = contextlib.nullcontext()
        if self.agent is not None and to.thread_ts:  # a session: Stop shown while it is written
            session = self.agent.session(client, to.team, to.channel, to.thread_ts, answering)
        with session:
            show_answer(self.core, answering, [*native, edited], PLATFORM)

    def on_reaction(self, event: dict[str, Any], body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        item = event.get("item", {})
        # Only reactions on the bot's own messages can be votes; skip the rest before any write.
        if item.get("type") != "message" or event.get("item_user") != context.bot_user_id:
            return
        if not self.directory.is_person(client, event["user"]):
            return  # another app's bot user: only people vote
        ref = message_ref(item["channel"], item["ts"])
        added = event["type"] == "reaction_added"
        workspace = context.team_id or body.get("team_id") or ""
        self.core.handle(Reaction(PLATFORM, ref, event["user"], event["reaction"], added, body["event_id"], workspace))

    def on_command(self, ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """Acked once the command has run (its writes durable), or after ACK_WAIT_S whatever it does."""
        wait([_later(self._replies, self._run_command, command, respond, client)], timeout=ACK_WAIT_S)
        ack()

    def _run_command(self, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        user, channel = command["user_id"], command["channel_id"]
        text = from_slack(command.get("text") or "").strip() or "help"
        conversation = ConversationKey(PLATFORM, channel, "")
        # Slack's trigger_id names one invocation: a replayed signed request runs nothing again.
        trigger = command.get("trigger_id")
        incoming = Incoming(
            PLATFORM, conversation, user, command=text, workspace=command.get("team_id") or "",
            event_id=f"cmd:{trigger}" if trigger else "",
        )  # fmt: skip
        try:
            result = self.core.handle(incoming)
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


def _later(pool: ThreadPoolExecutor, work: Callable[..., None], *args: Any) -> Future[None]:
    """Run `work` on `pool`; a pool keeps errors in a Future nobody reads, so log them here."""

    def logged() -> None:
        try:
            work(*args)
        except Exception:
            log.exception("Slack: %s failed", getattr(work, "__name__", work))

    return pool.submit(logged)


# -- starting and running -------------------------------------------------------------------


def build_app(core: Core, settings: Settings) -> App:
    """The bolt App with every listener registered (calls auth.test)."""
    return SlackAdapter(core, settings).app


def start_socket_mode(app: App, settings: Settings, readiness: Readiness | None = None) -> Running:
    """Connect over Socket Mode (apps.connections.open goes through app.client) without blocking;
    `readiness` follows the connection."""
    return connect_socket_mode(app, settings, readiness)


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
            server = http_server(app, "0.0.0.0", settings.slack.port)
            log.info("Slack HTTP mode: listening on :%d%s", settings.slack.port, EVENTS_PATH)
            readiness.up(PLATFORM)
            try:
                server.serve_forever()
            finally:
                server.server_close()
        else:
            log.info("Slack Socket Mode: connecting through %s", settings.slack.api_url)
            running = connect_socket_mode(app, settings, readiness)  # checks SLACK_APP_TOKEN
            try:
                threading.Event().wait()  # the handler's own threads serve; it reconnects by itself
            finally:
                running.stop()
    except (BoltError, SlackApiError) as exc:
        metrics.PLATFORM_ERRORS.labels(PLATFORM).inc()
        log.error(
            "Slack could not start: %s. Check SLACK_BOT_TOKEN, SLACK_APP_TOKEN and SLACK_API_URL (%s); "
            "see docs/slack.md",
            exc,
            settings.slack.api_url,
        )
