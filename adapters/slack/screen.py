"""Slack's messages for the edit-based way of showing a reply (streaming.Screen): posted, edited
with chat.update as the reply grows, the feedback buttons where they are asked for, and 429s
handed to the shared edit budget as `RateLimited` instead of being waited out inside the SDK."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from adapters.slack.format import message_body, message_ref
from adapters.streaming import RateLimited

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
    """A reply's messages in one channel or thread (streaming.Screen)."""

    def __init__(self, client: WebClient, channel: str, thread_ts: str | None) -> None:
        self.client, self.channel, self.thread_ts = client, channel, thread_ts

    def post(self, text: str, buttons: str | None = None) -> str:
        body = message_body(text, buttons)
        posted = limited(self.client.chat_postMessage, channel=self.channel, thread_ts=self.thread_ts, **body)
        return message_ref(self.channel, posted["ts"])

    def edit(self, ref: str, text: str, buttons: str | None = None) -> None:
        limited(self.client.chat_update, channel=self.channel, ts=ref.split(":", 1)[1], **message_body(text, buttons))

    def delete(self, ref: str) -> None:
        limited(self.client.chat_delete, channel=self.channel, ts=ref.split(":", 1)[1])
