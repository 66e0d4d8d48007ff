"""Prometheus metrics: what an operator watches on a running bot.

Every process keeps its own (prometheus-client's default registry); `bot/ops/health.py` serves them
at /metrics. Names follow Prometheus conventions: seconds, `_total` for counters.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

# Replies on a small CPU model take seconds; on a GPU, tenths.
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)

REPLY_SECONDS = Histogram("bot_reply_seconds", "Time from a message to its complete, stored reply", buckets=_SECONDS)
FIRST_TOKEN_SECONDS = Histogram(
    "bot_first_token_seconds", "Time from a message to the first token of its reply", buckets=_SECONDS
)
QUEUE_WAIT_SECONDS = Histogram("bot_queue_wait_seconds", "Time a reply waited for the model", buckets=_SECONDS)
TOKENS_PER_SECOND = Histogram(
    "bot_decode_tokens_per_second", "Reply tokens per second of generation", buckets=(1, 2, 5, 10, 20, 40, 80, 160, 320)
)
REPLY_TOKENS = Counter("bot_reply_tokens_total", "Tokens written in replies")
RATE_LIMITED = Counter("bot_rate_limited_total", "Platform 429s met while showing a reply (it is still delivered)")
REFUSED = Counter("bot_refused_total", "Questions refused at once, before anything was queued", ["reason"])
REPLIES_CANCELLED = Counter(
    "bot_replies_cancelled_total", "Replies whose asker left (stream dropped or stopped), by where they were", ["stage"]
)
QUEUE_LENGTH = Gauge("bot_queue_length", "Replies waiting for the model")
VOTES = Counter("bot_votes_total", "Votes on replies", ["value"])
CORRECTIONS = Counter("bot_corrections_total", "Corrections and taught answers", ["status"])
ACTIVE_LORA = Gauge("bot_active_lora", "1 for the LoRA version this process serves ('' = base model)", ["version"])
SWAP_SECONDS = Histogram("bot_lora_swap_seconds", "Time to swap the serving LoRA", buckets=_SECONDS)
TRAINING_SECONDS = Histogram(
    "bot_training_seconds",
    "Wall time of training runs, gate included",
    ["result"],
    buckets=(30, 60, 120, 300, 600, 1800),
)
PLATFORM_ERRORS = Counter(
    "bot_platform_errors_total", "Failures talking to a chat platform or answering on it", ["platform"]
)


def observe_reply(latency_s: float, first_token_s: float | None, waited_s: float, tokens: int) -> None:
    """One stored reply; all times from the message's arrival, `waited_s` in the model's queue."""
    REPLY_SECONDS.observe(latency_s)
    QUEUE_WAIT_SECONDS.observe(waited_s)
    if first_token_s is not None:
        FIRST_TOKEN_SECONDS.observe(first_token_s)
    REPLY_TOKENS.inc(tokens)
    writing_s = latency_s - waited_s
    if tokens and writing_s > 0:
        TOKENS_PER_SECOND.observe(tokens / writing_s)


def serving(version: str | None) -> None:
    """Record which LoRA this process now serves (one series set to 1)."""
    ACTIVE_LORA.clear()
    ACTIVE_LORA.labels(version or "").set(1)


def watch_queue(length: Callable[[], int]) -> None:
    QUEUE_LENGTH.set_function(length)
