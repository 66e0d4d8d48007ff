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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from adapters.edit_budget import EditBudget
from adapters.provenance import Provenance
from adapters.text import plain_links, split_text
from bot.ops import metrics
from bot.types import Answering, Done, Looked, Queued, Reply, StreamEvent, Token, UserError

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

WRITING = " …"  # shown after the text while the model still writes
SOMETHING_WENT_WRONG = "⚠️ Sorry, something went wrong while answering. Please try again."
STOPPED = "⏹ Stopped."  # under a reply its asker stopped (it has no feedback buttons: it takes no votes)


class Screen(Protocol):
    """The platform's messages, by the reference the core links to exchanges (`message_ref`).

    `buttons` names the exchange whose feedback buttons go under the message: set only on the
    message that shows the last part of a finished reply."""

    def post(self, text: str, buttons: str | None = None) -> str: ...

    def edit(self, ref: str, text: str, buttons: str | None = None) -> None: ...

    def delete(self, ref: str) -> None: ...


class ShowElsewhere(Exception):
    """This way of showing a reply cannot show it (Slack refused a stream; a stream cannot show a
    queue notice): the reply moves to the next way, keeping its events and the text so far."""


class ReplyView(Protocol):
    """One way of showing a reply as the model writes it; `show_answer` drives it."""

    @property
    def refs(self) -> list[str]:
        """The messages that show the reply so far."""
        ...

    def begin(self) -> None: ...

    def look(self, looked: Looked) -> None:
        """The verified answers looked up for the reply, before any text."""
        ...

    def queued(self, position: int) -> None: ...

    def grow(self, text: str) -> None:
        """The reply so far (may be skipped: rate limits)."""
        ...

    def finish(self, text: str, exchange_id: str, about: Provenance) -> list[str]:
        """The whole reply with its feedback buttons and where it came from; the refs of the messages posted now."""
        ...

    def fail(self, text: str, note: str) -> None:
        """Say what went wrong (`note`) where the reply so far (`text`) is shown."""
        ...


def queued_text(position: int) -> str:
    return f"⏳ Queued: {position} ahead of you…"


class RateLimited(Exception):
    """What a Screen raises when the platform answered 429 (after its SDK's own retries)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited for {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


FINAL_TRIES = 8  # a final edit rate-limited this often in a row is a platform outage, not a limit


class ReplyOnScreen:
    """A reply shown in messages it posts and edits as the text grows (deleting one when the text
    shrinks), the feedback buttons on the message with the last part of the finished reply: the
    `ReplyView` of every message-editing platform. `footer` is how the platform writes where the
    finished reply came from, after its text.

    Edits spend `budget` under `key` (the workspace or channel route, shared by every reply): an
    intermediate one (the text so far, a queue notice) is skipped when it is spent or rate-limited,
    the final one always goes.
    """

    def __init__(
        self,
        screen: Screen,
        limit: int,
        interval_s: float,
        budget: EditBudget | None = None,
        key: str = "",
        placeholder: str = "",
        footer: Callable[[Provenance], str] | None = None,
    ) -> None:
        self.screen, self.limit, self.interval_s = screen, limit, interval_s
        self.budget, self.key, self.placeholder, self.footer = budget, key, placeholder, footer
        self.parts: list[tuple[str, str, str | None]] = []  # (message ref, text shown, its buttons)
        self.last = 0.0

    @property
    def refs(self) -> list[str]:
        return [ref for ref, _, _ in self.parts]

    def begin(self) -> None:
        if self.placeholder:
            self.show(self.placeholder, wait=False)

    def look(self, looked: Looked) -> None:
        """Shown with the finished reply (`footer`)."""

    def queued(self, position: int) -> None:
        # Waiting in line, the reply has time: the notice keeps the edit interval, then spends the
        # shared budget like any intermediate edit, skipped when it is spent or rate-limited (a later
        # notice or the reply replaces it). It never ends a reply.
        time.sleep(max(0.0, self.last + self.interval_s - time.monotonic()))
        self.show(queued_text(position), wait=False)

    def grow(self, text: str) -> None:
        if text.strip():
            self.show(text + WRITING, wait=False)

    def finish(self, text: str, exchange_id: str, about: Provenance) -> list[str]:
        return self.show(text + (self.footer(about) if self.footer else ""), wait=True, buttons=exchange_id)

    def fail(self, text: str, note: str) -> None:
        try:
            self.show((text + "\n\n" if text.strip() else "") + note, wait=True)
        except Exception:  # the platform is gone too (a closed client): nothing more to say
            log.warning("could not show the failure: %s", note, exc_info=True)

    def show(self, text: str, *, wait: bool, buttons: str | None = None) -> list[str]:
        """Show `text` (with `buttons` under its last part); too soon after the last edit, or with
        the edit budget spent, skip it or, with `wait`, wait (and retry through rate limits).
        Returns the refs of messages posted now."""
        pause = self.last + self.interval_s - time.monotonic()
        if not wait:
            if pause > 0 or (self.parts and self.budget is not None and not self.budget.take(self.key)):
                return []
            posted: list[str] = []
            try:
                self._apply(text, posted, buttons)
            except RateLimited as limited:
                self._rate_limited(limited)
            return posted
        time.sleep(max(pause, self.budget.spend(self.key) if self.budget is not None else 0.0))
        posted = []
        for attempt in range(FINAL_TRIES):
            try:
                self._apply(text, posted, buttons)
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

    def _apply(self, text: str, posted: list[str], buttons: str | None) -> None:
        """Make the messages show `text`; `posted` collects what is posted, even when a later call fails."""
        chunks = split_text(plain_links(text), self.limit)  # no link hides its address, on any platform
        for i, chunk in enumerate(chunks):
            wanted = buttons if i == len(chunks) - 1 else None
            if i < len(self.parts):
                ref, shown, had = self.parts[i]
                if (chunk, wanted) != (shown, had):  # new text, or the buttons to add
                    self.screen.edit(ref, chunk, wanted)
                    self.parts[i] = (ref, chunk, wanted)
            else:
                ref = self.screen.post(chunk, wanted)
                self.parts.append((ref, chunk, wanted))
                posted.append(ref)
        while len(self.parts) > len(chunks):  # the final text can be shorter than the stream
            self.screen.delete(self.parts.pop()[0])
        self.last = time.monotonic()


def show_answer(core: Core, answering: Answering, views: Sequence[ReplyView], platform: str) -> Reply | None:
    """Show the core's answer in the first of `views` that can (the next takes over, with the
    text so far, when one raises ShowElsewhere); every message that shows the reply is linked to
    its exchange before the final text, so a vote cast the moment it reads complete counts.
    The answer is generated as its events are read here. Returns the Reply, or None when it
    failed (the failure is shown in its place)."""
    shown = _Shown(list(views))
    events = answering.events
    try:
        for event in events:
            if isinstance(event, Token):
                shown.text += event.text
            reply = shown.on(event, core, platform)
            if reply is not None:
                return reply
        raise RuntimeError("the answer ended without a reply")
    except UserError as exc:  # e.g. an oversized message: say why, in place of the answer
        shown.fail(f"⚠️ {exc}")
    except Exception:
        log.exception("answering in %s failed", answering.message.conversation.as_str())
        metrics.PLATFORM_ERRORS.labels(platform).inc()
        shown.fail(SOMETHING_WENT_WRONG)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # the core's stream holds the asker's place in line until it is closed
    return None


class _Shown:
    """A reply's state while `show_answer` shows it: the text so far, a queue notice, and the view
    that shows them, replaced by the next one when it cannot."""

    def __init__(self, views: list[ReplyView]) -> None:
        self.views, self.text, self.position = views, "", None
        self.looked: Looked | None = None
        self.view = views.pop(0)
        self.view.begin()

    def on(self, event: StreamEvent, core: Core, platform: str) -> Reply | None:
        while True:
            try:
                return self._show(event, core, platform)
            except ShowElsewhere:
                self._next()

    def _show(self, event: StreamEvent, core: Core, platform: str) -> Reply | None:
        if isinstance(event, Looked):
            self.looked = event
            self.view.look(event)
        elif isinstance(event, Queued) and not self.text:
            self.position = event.position
            self.view.queued(event.position)
        elif isinstance(event, Token):
            self.view.grow(self.text)
        elif isinstance(event, Done):
            reply = event.reply
            for ref in self.view.refs:  # link what is on screen before the last edit
                core.link_message(reply.exchange_id, platform, ref)
            if reply.stopped:  # what was written stays, marked, without buttons: it takes no votes
                self.view.fail(reply.text, STOPPED)
                return reply
            about = Provenance.of(self.looked, reply)
            for ref in self.view.finish(reply.text or "(no answer)", reply.exchange_id, about):
                core.link_message(reply.exchange_id, platform, ref)
            return reply
        return None

    def _next(self) -> None:
        """The next view takes over from where this one stopped."""
        if not self.views:
            raise RuntimeError("no way left to show the reply")
        self.view = self.views.pop(0)
        self.view.begin()
        if self.looked is not None:
            self.view.look(self.looked)
        if self.text.strip():
            self.view.grow(self.text)
        elif self.position is not None:
            self.view.queued(self.position)

    def fail(self, note: str) -> None:
        while True:
            try:
                self.view.fail(self.text, note)
                return
            except ShowElsewhere:
                self._next()
