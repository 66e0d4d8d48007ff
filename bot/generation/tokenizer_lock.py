"""One lock per tokenizer, held by every call the bot makes into it.

A Hugging Face fast tokenizer keeps per-call options as state on the Rust tokenizer it wraps:
`tokenizer(text, split_special_tokens=True)` switches the shared tokenizer's flag, encodes, and
leaves it switched for the next caller. Two threads building prompts at once (two users in Slack)
then read each other's option: a prompt's own `<|im_start|>` is split into plain text (measured: a
45-token prompt came out as 57 tokens), or a user's text is read as real special tokens, which the
prompt builder exists to prevent. Concurrent calls can also fail outright ("Already borrowed").
"""

from __future__ import annotations

import threading
from typing import Any

_CREATING = threading.Lock()


def tokenizer_lock(tokenizer: Any) -> threading.RLock:
    """The lock for `tokenizer` (re-entrant: a locked helper may call another)."""
    lock = getattr(tokenizer, "_bot_lock", None)
    if lock is None:
        with _CREATING:
            lock = getattr(tokenizer, "_bot_lock", None)
            if lock is None:
                lock = threading.RLock()
                tokenizer._bot_lock = lock
    return lock
