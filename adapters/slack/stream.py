"""Slack's native streaming as a way of showing a reply (streaming.ReplyView):
chat.startStream / appendStream / stopStream through slack_sdk's `client.chat_stream()`, for
replies in a thread (Slack streams only there).

Above the text, the stream shows two steps (`task_update` chunks): the verified answers looked up
(how many, and which) and the answer written (with which LoRA version), so a reader sees where
it came from; the edit-based view says the same in its last line.

The stream carries the reply's first part (the same split as the edit-based screen, so both show
the same text); later parts, if any, are posted as messages, and the feedback buttons go under
the last. Appends go out at most every `tuning.slack_stream_interval_s`, whole words only (Markdown and the
no-ping escaping see whole words), and spend the workspace's append budget: when it is spent the
text waits for the next append; the rest always goes with stopStream.

Where a workspace refuses streaming (`UNSUPPORTED`), it is remembered; that reply, like one that
waits in the queue (its notice must be replaced, which a stream cannot do), raises ShowElsewhere
and `show_answer` shows it with edits instead.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from adapters.edit_budget import EditBudget
from adapters.provenance import Provenance
from adapters.slack.format import feedback_block, message_ref, task_chunk, to_slack
from adapters.slack.screen import MAX_CHARS, SlackScreen, retry_after_s
from adapters.streaming import ShowElsewhere
from adapters.text import split_text
from bot.ops import metrics
from bot.types import Looked

log = logging.getLogger(__name__)

# chat.startStream errors that mean "not here, not ever": the workspace or app cannot stream.
UNSUPPORTED = frozenset(
    {"not_allowed", "method_not_supported", "unknown_method", "not_allowed_token_type", "missing_scope",
     "feature_not_enabled"}
)  # fmt: skip


class StreamChoice:
    """Whether a reply streams natively (`tuning.slack_streaming`), remembering workspaces that refused."""

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


class NativeStream:
    """One reply streamed natively into its thread (streaming.ReplyView)."""

    def __init__(self, to: Target, choice: StreamChoice) -> None:
        self.to, self.choice = to, choice
        self.streamer = to.client.chat_stream(
            channel=to.channel, thread_ts=to.thread_ts, recipient_team_id=to.team, recipient_user_id=to.user,
            buffer_size=1,  # every append is sent: this view decides when, as for edits
        )  # fmt: skip
        self.sent, self.last = "", 0.0
        self.looked: Looked | None = None

    @property
    def refs(self) -> list[str]:
        ts = self.streamer.ts
        return [message_ref(self.to.channel, ts)] if ts is not None else []

    def begin(self) -> None:
        """Nothing is shown before the first words: a stream cannot be emptied again."""

    def look(self, looked: Looked) -> None:
        self.looked = looked

    def steps(self, writing: str, about: Provenance | None = None) -> list[dict[str, object]]:
        """The lookup step (done) and the writing step in state `writing`."""
        looked = self.looked
        about = about or Provenance(looked.examples if looked else (), looked.lora_version if looked else None)
        wrote = "Writing the answer" if writing == "in_progress" else "Wrote the answer"
        return [
            task_chunk(
                "lookup", f"Looked up verified answers: {about.looked_up()}", "complete", "; ".join(about.named())
            ),
            task_chunk("write", wrote, writing, f"with {about.model}"),
        ]

    def queued(self, position: int) -> None:
        if self.streamer.ts is None:
            raise ShowElsewhere("a stream cannot show a queue notice")

    def grow(self, text: str) -> None:
        piece = sendable(text)[len(self.sent) :]
        started = self.streamer.ts is not None
        due = time.monotonic() - self.last >= self.to.interval_s
        if not piece or (started and not (due and self.to.budget.take(self.to.team))):
            return
        self.sent += piece  # once handed over it is in the helper's buffer, sent or not
        self.last = time.monotonic()
        try:
            if started:
                self.streamer.append(markdown_text=to_slack(piece))
            else:  # the first append starts the stream: the steps, then the words
                self.streamer.append(chunks=[*self.steps("in_progress"), _text(piece)])
        except SlackApiError as exc:
            if not started:
                self.choice.refused(self.to.team, exc)
                raise ShowElsewhere("Slack refused the stream") from exc
            wait = retry_after_s(exc)
            if wait is None:
                raise
            metrics.RATE_LIMITED.inc()
            self.to.budget.rate_limited(self.to.team, wait)  # the text stays buffered for the next append

    def finish(self, text: str, exchange_id: str, about: Provenance) -> list[str]:
        """Stop the stream with the rest of the first part and, when the reply is one message, the
        buttons; post the later parts, the buttons under the last."""
        parts, sent = split_text(text, MAX_CHARS), self.sent
        if not parts[0].startswith(sent):  # the model's text and the reply differ (whitespace): show the rest
            log.warning("Slack: the streamed text is not a prefix of the reply %s", exchange_id)
        rest = parts[0][len(sent) :] if parts[0].startswith(sent) else parts[0][len(sent.strip()) :]
        started = self.streamer.ts is not None
        try:
            steps = self.steps("complete", about) if started else []  # not started: the reply came at once
            self.streamer.stop(
                chunks=[*steps, _text(rest)], blocks=[feedback_block(exchange_id)] if len(parts) == 1 else None
            )
        except SlackApiError as exc:
            if started:
                raise
            self.choice.refused(self.to.team, exc)
            raise ShowElsewhere("Slack refused the stream") from exc
        screen = SlackScreen(self.to.client, self.to.channel, self.to.thread_ts)
        later = [screen.post(part, exchange_id if i == len(parts) - 1 else None) for i, part in enumerate(parts) if i]
        return self.refs + later

    def fail(self, text: str, note: str) -> None:
        """The answer failed after the stream began: end the stream with what went wrong."""
        if self.streamer.ts is None:
            raise ShowElsewhere("nothing streamed yet: the edit-based view says what went wrong")
        try:
            self.streamer.stop(markdown_text=to_slack("\n\n" + note))
        except SlackApiError:  # Slack ended it already (its Stop button does): say it in the message
            shown = split_text(text, MAX_CHARS)[0] if text.strip() else ""
            try:
                ts = self.streamer.ts
                self.to.client.chat_update(channel=self.to.channel, ts=ts, text=to_slack(f"{shown}\n\n{note}".strip()))
            except Exception:
                log.warning("could not end the stream: %s", note, exc_info=True)


def _text(text: str) -> dict[str, str]:
    return {"type": "markdown_text", "text": to_slack(text)}
