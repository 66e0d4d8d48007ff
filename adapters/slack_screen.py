"""Slack's edit-based screen (streaming.Screen): a placeholder edited with chat.update as the reply
grows, the feedback buttons on the last message of a finished reply, and 429s handed to the
shared edit budget as `RateLimited` instead of being waited out inside the SDK."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from adapters.slack_format import message_body, message_ref
from adapters.streaming import RateLimited, ReplyOnScreen
from adapters.text import split_text
from bot.types import Done, StreamEvent

log = logging.getLogger(__name__)

MAX_CHARS = 3900  # Slack advises at most 4,000 characters a message; keep a margin
# Calls whose 429 the adapter's budgets handle: an intermediate edit is skipped, not waited for.
BUDGETED = frozenset({"chat.update", "chat.appendStream"})


class SdkRetries(RateLimitErrorRetryHandler):
    """slack_sdk's 429 retries (after Retry-After), except for the budgeted calls: their 429 reaches
    the adapter at once, so a reply thread never sleeps on an edit the budget would skip."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = request.url.split("?", 1)[0].rsplit("/", 1)[-1]
        return method not in BUDGETED and super()._can_retry(
            state=state, request=request, response=response, error=error
        )


def retry_after_s(exc: SlackApiError) -> float | None:
    """The seconds a 429 asks to wait; None when `exc` is not a rate limit."""
    if exc.response.status_code != 429:
        return None
    for key, value in (exc.response.headers or {}).items():
        if key.lower() == "retry-after":
            return float(value[0] if isinstance(value, list) else value)
    return 1.0


def limited(call: Callable[..., Any], **kwargs: Any) -> Any:
    """`call(**kwargs)`, with a 429 raised as streaming.RateLimited."""
    try:
        return call(**kwargs)
    except SlackApiError as exc:
        wait = retry_after_s(exc)
        if wait is None:
            raise
        raise RateLimited(wait) from exc


class SlackScreen:
    """A reply's messages in one channel or thread. Once the reply is done (`finishing`), the
    message that shows its last part carries the feedback buttons."""

    def __init__(self, client: WebClient, channel: str, thread_ts: str | None) -> None:
        self.client, self.channel, self.thread_ts = client, channel, thread_ts
        self.refs: list[str] = []  # in order, as ReplyOnScreen keeps them
        self.final: tuple[str, int] | None = None  # (exchange id, index of the last part)
        self.buttons_on = ""  # the ref of the message that shows the buttons

    def finishing(self, exchange_id: str, text: str) -> None:
        self.final = (exchange_id, len(split_text(text, MAX_CHARS)) - 1)

    def _body(self, index: int, text: str) -> tuple[dict[str, Any], bool]:
        last = self.final is not None and index == self.final[1]
        return message_body(text, self.final[0] if last and self.final else None), last

    def post(self, text: str) -> str:
        body, last = self._body(len(self.refs), text)
        posted = limited(self.client.chat_postMessage, channel=self.channel, thread_ts=self.thread_ts, **body)
        ref = message_ref(self.channel, posted["ts"])
        self.refs.append(ref)
        self.buttons_on = ref if last else self.buttons_on
        return ref

    def edit(self, ref: str, text: str) -> None:
        body, last = self._body(self.refs.index(ref), text)
        limited(self.client.chat_update, channel=self.channel, ts=ref.split(":", 1)[1], **body)
        self.buttons_on = ref if last else self.buttons_on

    def delete(self, ref: str) -> None:
        limited(self.client.chat_delete, channel=self.channel, ts=ref.split(":", 1)[1])
        self.refs.remove(ref)


def announcing_final(events: Iterator[StreamEvent], screen: SlackScreen) -> Iterator[StreamEvent]:
    """`events`, telling `screen` the finished reply before show_answer shows it."""
    for event in events:
        if isinstance(event, Done):
            screen.finishing(event.reply.exchange_id, event.reply.text)
        yield event


def ensure_buttons(on_screen: ReplyOnScreen, screen: SlackScreen) -> None:
    """The final edit left the last message as it was (a reply that shrank): add the buttons now."""
    if screen.final is None or not on_screen.parts or screen.buttons_on == on_screen.parts[-1][0]:
        return
    ref, text = on_screen.parts[-1]
    try:
        screen.edit(ref, text)
    except (SlackApiError, RateLimited) as exc:
        log.warning("Slack: could not add the feedback buttons to %s: %s", ref, exc)
