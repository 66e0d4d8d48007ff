"""Showing a streamed reply on a platform that edits messages: what Slack and Discord share.

The reply grows in place: edits no closer together than the platform's rate limit allows, the
text split at its message-size limit without breaking a code block (adapters/text.py), a notice
while the question waits in line, and every message that shows the reply linked to its exchange
before the final edit, so that a vote cast the moment the reply reads complete counts. An
adapter supplies only a `Screen`: how to post, edit and delete one message.

It runs on the adapter's answer threads (the core blocks while the model writes); an async
platform's `Screen` hands each call to its event loop.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

from adapters.edit_budget import EditBudget
from adapters.text import split_text
from bot.ops import metrics
from bot.types import Answering, CommandResult, Done, Queued, Reply, Token, UserError

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

WRITING = " …"  # shown after the text while the model still writes
SOMETHING_WENT_WRONG = "⚠️ Sorry, something went wrong while answering. Please try again."
COMMAND_FAILED = "Sorry, that command failed; the logs say why."


def command_failed(platform: str, command: str) -> CommandResult:
    """What a user sees when their command raised: call it in the `except`, which it logs (with the
    traceback) and counts as a platform error."""
    log.exception("%s command %r failed", platform.capitalize(), command)
    metrics.PLATFORM_ERRORS.labels(platform).inc()
    return CommandResult(COMMAND_FAILED, ok=False)


class Screen(Protocol):
    """The platform's messages, by the reference the core links to exchanges (`message_ref`)."""

    def post(self, text: str) -> str: ...

    def edit(self, ref: str, text: str) -> None: ...

    def delete(self, ref: str) -> None: ...


def queued_text(position: int) -> str:
    return f"⏳ Queued: {position} ahead of you…"


def followup_text(done: Future[str]) -> str:
    """What to post when a long command (a retrain) finishes, fails or is cancelled."""
    if done.cancelled():
        return "⚠️ Cancelled."
    if (exc := done.exception()) is not None:
        return f"⚠️ Failed: {exc}"
    return done.result()


class RateLimited(Exception):
    """What a Screen raises when the platform answered 429 (after its SDK's own retries)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited for {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


FINAL_TRIES = 8  # a final edit rate-limited this often in a row is a platform outage, not a limit


class ReplyOnScreen:
    """The messages that show one reply: posted as the text grows, edited, deleted when it shrinks.

    Edits spend `budget` under `key` (the workspace or channel route, shared by every reply): an
    intermediate one is skipped when it is spent or rate-limited, the final one always goes.
    """

    def __init__(
        self, screen: Screen, limit: int, interval_s: float, budget: EditBudget | None = None, key: str = ""
    ) -> None:
        self.screen, self.limit, self.interval_s = screen, limit, interval_s
        self.budget, self.key = budget, key
        self.parts: list[tuple[str, str]] = []  # (message ref, text shown)
        self.last = 0.0

    @property
    def refs(self) -> list[str]:
        return [ref for ref, _ in self.parts]

    def show(self, text: str, *, wait: bool) -> list[str]:
        """Show `text`; too soon after the last edit, or with the edit budget spent, skip it or,
        with `wait`, wait (and retry through rate limits). Returns the refs of messages posted now."""
        pause = self.last + self.interval_s - time.monotonic()
        if not wait:
            if pause > 0 or (self.parts and self.budget is not None and not self.budget.take(self.key)):
                return []
            posted: list[str] = []
            try:
                self._apply(text, posted)
            except RateLimited as limited:
                self._rate_limited(limited)
            return posted
        time.sleep(max(pause, self.budget.spend(self.key) if self.budget is not None else 0.0))
        posted = []
        for attempt in range(FINAL_TRIES):
            try:
                self._apply(text, posted)
                return posted
            except RateLimited as limited:
                if attempt == FINAL_TRIES - 1:
                    raise
                self._rate_limited(limited)
                time.sleep(limited.retry_after_s)
        raise AssertionError("unreachable")

    def _rate_limited(self, limited: RateLimited) -> None:
        metrics.RATE_LIMITED.inc()
        if self.budget is not None:
            self.budget.rate_limited(self.key, limited.retry_after_s)

    def _apply(self, text: str, posted: list[str]) -> None:
        """Make the messages show `text`; `posted` collects what is posted, even when a later call fails."""
        chunks = split_text(text, self.limit)
        for i, chunk in enumerate(chunks):
            if i < len(self.parts):
                ref, shown = self.parts[i]
                if chunk != shown:
                    self.screen.edit(ref, chunk)
                    self.parts[i] = (ref, chunk)
            else:
                ref = self.screen.post(chunk)
                self.parts.append((ref, chunk))
                posted.append(ref)
        while len(self.parts) > len(chunks):  # the final text can be shorter than the stream
            self.screen.delete(self.parts.pop()[0])
        self.last = time.monotonic()


def show_answer(
    core: Core, answering: Answering, on_screen: ReplyOnScreen, platform: str, placeholder: str = ""
) -> Reply | None:
    """Stream the core's answer onto the screen; the Reply, or None when it failed (the failure
    is shown in its place)."""
    if placeholder:
        on_screen.show(placeholder, wait=False)
    text = ""
    try:
        for event in answering.events:
            if isinstance(event, Queued) and not text:
                on_screen.show(queued_text(event.position), wait=True)
            elif isinstance(event, Token):
                text += event.text
                if text.strip():
                    on_screen.show(text + WRITING, wait=False)
            elif isinstance(event, Done):
                for ref in on_screen.refs:  # link what is on screen before the last edit
                    core.link_message(event.reply.exchange_id, platform, ref)
                for ref in on_screen.show(event.reply.text or "(no answer)", wait=True):
                    core.link_message(event.reply.exchange_id, platform, ref)
                return event.reply
        raise RuntimeError("the answer ended without a reply")
    except UserError as exc:  # e.g. an oversized message: say why, in place of the answer
        _show_failure(on_screen, f"⚠️ {exc}")
    except Exception:
        log.exception("answering in %s failed", answering.message.conversation.as_str())
        metrics.PLATFORM_ERRORS.labels(platform).inc()
        _show_failure(on_screen, (text + "\n\n" if text.strip() else "") + SOMETHING_WENT_WRONG)
    return None


def _show_failure(on_screen: ReplyOnScreen, text: str) -> None:
    try:
        on_screen.show(text, wait=True)
    except Exception:  # the platform is gone too (a closed client): nothing more to say
        log.warning("could not show the failure: %s", text, exc_info=True)
