"""One budget of message edits per workspace (Slack) or channel route (Discord), shared by every
reply this process streams: the platforms limit edits per app there, not per reply.

Slack's `chat.update` is rate tier 3, about 50 a minute per workspace per app; Discord allows about
5 edits per 5 s per channel. A reply's intermediate edits are skipped when the budget is spent; its
final text is always sent (it may overdraw the budget: later intermediate edits wait for it). A 429
empties that key's budget until its Retry-After, which also keeps this process from piling onto a
limit that other replicas spend too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from cachetools import LRUCache

# Keys (workspaces, channel routes) kept: an idle key's bucket refills to full, the same as a new one,
# so forgetting the least recently used keeps memory bounded and changes nothing for the busy ones.
MAX_KEYS = 4096


@dataclass
class _Bucket:
    tokens: float
    updated: float
    blocked_until: float = 0.0


class EditBudget:
    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate_s = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: LRUCache[str, _Bucket] = LRUCache(MAX_KEYS)
        self._lock = threading.Lock()

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_s)
        bucket.updated = now
        return bucket

    def take(self, key: str) -> bool:
        """One intermediate edit for `key`, if the budget has one now (else skip the edit)."""
        with self._lock:
            now = time.monotonic()
            bucket = self._bucket(key, now)
            if now < bucket.blocked_until or bucket.tokens < 1:
                return False
            bucket.tokens -= 1
            return True

    def spend(self, key: str) -> float:
        """A final edit, which always goes: seconds to wait first (a Retry-After still running)."""
        with self._lock:
            now = time.monotonic()
            bucket = self._bucket(key, now)
            bucket.tokens -= 1  # may go below zero: intermediate edits pay the debt back
            return max(0.0, bucket.blocked_until - now)

    def rate_limited(self, key: str, retry_after_s: float) -> None:
        """The platform answered 429: nothing more for `key` until Retry-After has passed."""
        with self._lock:
            now = time.monotonic()
            bucket = self._bucket(key, now)
            bucket.tokens = min(bucket.tokens, 0.0)
            bucket.blocked_until = max(bucket.blocked_until, now + retry_after_s)
