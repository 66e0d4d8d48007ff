"""Slack's native streaming: chat.startStream / appendStream / stopStream through slack_sdk's
`client.chat_stream()`, for replies in a thread (Slack streams only there).

The stream carries the reply's first part (the same split as the edit-based screen, so both show
the same text); later parts, if any, are posted as messages, and the feedback buttons go under
the last. Appends go out at most every `stream_interval_s`, whole words only (Markdown and the
no-ping escaping see whole words), and spend the workspace's append budget: when it is spent the
text waits for the next append; the rest always goes with stopStream.

Where a workspace refuses streaming (`UNSUPPORTED`), it is remembered and the reply, like one
that waits in the queue (its notice must be replaced, which a stream cannot do), is shown with
edits instead: `show_natively` then returns the events to show that way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.chat_stream import ChatStream

from adapters.edit_budget import EditBudget
from adapters.slack_format import feedback_block, message_ref, to_slack
from adapters.slack_screen import MAX_CHARS, SlackScreen, retry_after_s
from adapters.streaming import SOMETHING_WENT_WRONG
from adapters.text import split_text
from bot.ops import metrics
from bot.types import Answering, Done, Queued, StreamEvent, Token, UserError

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

# chat.startStream errors that mean "not here, not ever": the workspace or app cannot stream.
UNSUPPORTED = frozenset(
    {"not_allowed", "method_not_supported", "unknown_method", "not_allowed_token_type", "missing_scope",
     "feature_not_enabled"}
)  # fmt: skip
PLATFORM = "slack"


class StreamChoice:
    """Whether a reply streams natively (`slack.streaming`), remembering workspaces that refused."""

    def __init__(self, mode: Literal["auto", "native", "edit"]) -> None:
        self.mode = mode
        self._unsupported: set[str] = set()
        self._lock = threading.Lock()

    def native(self, team: str, thread_ts: str | None) -> bool:
        if not thread_ts or self.mode == "edit":
            return False
        with self._lock:
            return self.mode == "native" or team not in self._unsupported

    def refused(self, team: str, exc: SlackApiError) -> None:
        error = str(exc.response.get("error", ""))
        if error in UNSUPPORTED:
            with self._lock:
                first = team not in self._unsupported
                self._unsupported.add(team)
            if first:
                log.warning("Slack: workspace %s cannot stream (%s): replies there use chat.update", team, error)
        else:
            log.info("Slack: chat.startStream failed (%s); this reply uses chat.update", error)


@dataclass
class Target:
    """Where a streamed reply goes, and whose budget it spends."""

    client: WebClient
    channel: str
    thread_ts: str
    team: str
    user: str
    interval_s: float
    budget: EditBudget


def sendable(text: str) -> str:
    """What of `text` a stream may show already: of its first part, the whole words within half a
    message (the first part's final cut falls after half of it wherever a line, sentence or word
    ends there)."""
    head = split_text(text, MAX_CHARS)[0][: MAX_CHARS // 2]
    cut = max(head.rfind(" "), head.rfind("\n"))
    return head[:cut] if cut > 0 else ""


def show_natively(core: Core, answering: Answering, to: Target, choice: StreamChoice) -> Iterator[StreamEvent] | None:
    """Stream the answer; None when it is shown, else the events to show with edits (what was
    read of them replayed first)."""
    events = iter(answering.events)
    streamer = to.client.chat_stream(
        channel=to.channel, thread_ts=to.thread_ts, recipient_team_id=to.team, recipient_user_id=to.user,
        buffer_size=1,  # every append is sent: this adapter decides when, as for edits
    )  # fmt: skip
    text, sent, last = "", "", 0.0
    try:
        for event in events:
            if isinstance(event, Queued):
                if streamer.ts is None:
                    return chain([Token(text)] if text else [], [event], events)
            elif isinstance(event, Token):
                text += event.text
                piece = sendable(text)[len(sent) :]
                due = time.monotonic() - last >= to.interval_s
                if piece and (streamer.ts is None or (due and to.budget.take(to.team))):
                    started = streamer.ts is not None
                    sent += piece  # once handed over it is in the helper's buffer, sent or not
                    last = time.monotonic()
                    if not _append(streamer, piece, to, choice) and not started:
                        return chain([Token(text)], events)
            elif isinstance(event, Done):
                if _finish(core, streamer, event, sent, to, choice):
                    return None
                return chain([Token(text)], [event], events)
        raise RuntimeError("the answer ended without a reply")
    except Exception as exc:
        if streamer.ts is None:  # nothing shown yet: the edit path says what went wrong
            return chain([Token(text)] if text else [], _raising(exc))
        _stop_failed(streamer, exc, answering)
        return None


def _append(streamer: ChatStream, piece: str, to: Target, choice: StreamChoice) -> bool:
    """Send `piece`; False when the stream could not start (the reply falls back to edits)."""
    try:
        streamer.append(markdown_text=to_slack(piece))
        return True
    except SlackApiError as exc:
        if streamer.ts is None:
            choice.refused(to.team, exc)
            return False
        wait = retry_after_s(exc)
        if wait is None:
            raise
        metrics.RATE_LIMITED.inc()
        to.budget.rate_limited(to.team, wait)  # the text stays buffered for the next append
        return True


def _finish(core: Core, streamer: ChatStream, done: Done, sent: str, to: Target, choice: StreamChoice) -> bool:
    """Stop the stream with the rest of the first part and, when the reply is one message, the
    buttons; post the later parts. False when the stream never started (fall back to edits)."""
    reply = done.reply
    parts = split_text(reply.text or "(no answer)", MAX_CHARS)
    if not parts[0].startswith(sent):  # the model's text and the reply differ (whitespace): show the rest
        log.warning("Slack: the streamed text is not a prefix of the reply %s", reply.exchange_id)
    rest = parts[0][len(sent) :] if parts[0].startswith(sent) else parts[0][len(sent.strip()) :]
    blocks = [feedback_block(reply.exchange_id)] if len(parts) == 1 else None
    if streamer.ts is not None:
        core.link_message(reply.exchange_id, PLATFORM, message_ref(to.channel, streamer.ts))
    try:
        streamer.stop(markdown_text=to_slack(rest), blocks=blocks)
    except SlackApiError as exc:
        if streamer.ts is None:
            choice.refused(to.team, exc)
            return False
        raise
    core.link_message(reply.exchange_id, PLATFORM, message_ref(to.channel, streamer.ts))
    if len(parts) > 1:
        screen = SlackScreen(to.client, to.channel, to.thread_ts)
        screen.refs.append(message_ref(to.channel, streamer.ts))
        screen.finishing(reply.exchange_id, reply.text)
        for part in parts[1:]:
            core.link_message(reply.exchange_id, PLATFORM, screen.post(part))
    return True


def _raising(exc: BaseException) -> Iterator[StreamEvent]:
    raise exc
    yield  # a generator: show_answer meets the failure where it would have


def _stop_failed(streamer: ChatStream, exc: BaseException, answering: Answering) -> None:
    """The answer failed after the stream began: end the stream with what went wrong."""
    if isinstance(exc, UserError):
        note = f"\n\n⚠️ {exc}"
    else:
        log.error("answering in %s failed", answering.message.conversation.as_str(), exc_info=exc)
        metrics.PLATFORM_ERRORS.labels(PLATFORM).inc()
        note = "\n\n" + SOMETHING_WENT_WRONG
    try:
        streamer.stop(markdown_text=to_slack(note))
    except Exception:
        log.warning("could not end the stream: %s", note.strip(), exc_info=True)
