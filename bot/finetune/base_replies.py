"""Replies the base model writes, kept on disk so that no retrain asks the base model twice.

Every retrain asks the base model the same things: the gate's regression questions (for the
baseline, and for the candidate wherever no verified answer is in the prompt, since such replies are
written by the base model: `tuning.lora_for`), and the replay questions whose answers become
training targets (bot/finetune/self_replay.py). Greedy decoding makes each of those replies a function of the
prompt tokens, the weights, the decoding settings and the CPU's kernels, so `BaseReplies` wraps the
training process's engine and keeps them in <loras>/base_replies.json under a key of all of these.
The first retrain pays for them; the next ones mostly read them back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.generation.engine import NO_HINTS, Engine, OneAtATime, ReplyHints

log = logging.getLogger(__name__)
CACHE_FILE = "base_replies.json"
MAX_KEPT = 4000  # the most recently used replies (a run uses about 100)
# Everything in the settings that shapes a reply beyond its prompt tokens.
DECODING_SETTINGS = ("temperature", "no_repeat_ngram", "repetition_penalty", "answer_bias", "quantize", "device")


def _cpu_kernels() -> str:
    """Which vector kernels torch uses here: greedy replies can differ between CPUs in their last digits."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


class BaseReplies(OneAtATime):
    """An Engine that answers from the cache what the base model already wrote for the same prompt."""

    def __init__(self, inner: Engine, settings: Settings, base_fingerprint: str, path: Path) -> None:
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.files, self.description = inner.files, inner.description
        self.loras = inner.loras  # the inner engine's LoRA is the one serving
        self.path = path
        # Sampling is not a function of the prompt: nothing is cached then.
        self.enabled = settings.tuning.temperature == 0
        decoding = {name: getattr(settings.tuning, name) for name in DECODING_SETTINGS}
        engine = type(inner).__name__  # transformers' and llama.cpp's replies differ in near ties
        self._salt = json.dumps([base_fingerprint, decoding, _cpu_kernels(), engine], sort_keys=True)
        self._replies: dict[str, dict[str, Any]] = self._load() if self.enabled else {}
        self.hits = self.misses = 0

    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int:
        by_base = hints.base_only or self.inner.loras.version is None
        if not (self.enabled and by_base):
            return self.inner.generate(input_ids, max_new_tokens, on_text, hints)
        key = hashlib.sha256((self._salt + json.dumps([input_ids, max_new_tokens, hints.favored])).encode())
        digest = key.hexdigest()[:32]
        saved = self._replies.pop(digest, None)
        if saved is not None:
            self._replies[digest] = saved  # most recently used last
            self.hits += 1
            if saved["text"]:
                on_text(saved["text"])
            return int(saved["tokens"])
        self.misses += 1
        pieces: list[str] = []
        tokens = self.inner.generate(input_ids, max_new_tokens, lambda t: (pieces.append(t), on_text(t)), hints)
        self._replies[digest] = {"text": "".join(pieces), "tokens": tokens}
        return tokens

    def hold(self, input_ids: list[int], hints: ReplyHints, stop: Callable[[], bool]) -> int:
        return self.inner.hold(input_ids, hints, stop)

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        replies = saved.get("replies") if isinstance(saved, dict) else None
        return dict(replies) if isinstance(replies, dict) else {}

    def save(self) -> None:
        """Merged with what another instance of this run saved, written atomically (a reader sees
        the old file or the new one), the least recently used beyond MAX_KEPT left out."""
        if not self.enabled:
            return
        merged = self._load()
        for digest in self._replies:
            merged.pop(digest, None)
        merged.update(self._replies)
        kept = dict(list(merged.items())[-MAX_KEPT:])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{CACHE_FILE}.")
        with os.fdopen(fd, "w") as handle:
            json.dump({"replies": kept}, handle, ensure_ascii=False)
        os.replace(tmp, self.path)
        log.info("base replies: %d read back, %d written", self.hits, self.misses)
