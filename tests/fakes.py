"""Fast stand-ins for the model and the embedder, for tests that are not about them.

They implement the same protocols as the real classes (bot.generation.engine.Engine,
bot.embedder.Embedder), so the real GenerationService, stores and core run around them.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.generation.engine import NO_HINTS, OneAtATime, ReplyHints
from bot.generation.lora_follow import LoraFollower

SPECIAL = ("<|im_start|>", "<|im_end|>")


class FakeTokenizer:
    """ChatML rendering and one token per word; special tokens are single ids unless split."""

    eos_token_id = 2
    pad_token_id = 2

    def apply_chat_template(
        self, messages: list[dict[str, str]], tokenize: bool = False, add_generation_prompt: bool = True
    ) -> str:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def __call__(self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = False) -> dict:
        ids: list[int] = []
        pattern = "(" + "|".join(re.escape(s) for s in SPECIAL) + ")"
        for piece in re.split(pattern, text):
            if piece in SPECIAL and not split_special_tokens:
                ids.append(SPECIAL.index(piece) + 1)
            else:
                ids += [10 + int(hashlib.md5(w.encode()).hexdigest()[:6], 16) % 50000 for w in piece.split()]
        return {"input_ids": ids}


class FakeEngine(OneAtATime):
    """Streams a fixed reply word by word. `reply` may be a function of the prompt ids.

    `gate`, when given, holds every generation until it is set: a test can keep requests
    waiting and running for as long as it needs (clear it to hold, set it to let them go).
    """

    def __init__(
        self,
        reply: str | Callable[[list[int]], str] = "This is a test reply.",
        delay_s: float = 0.0,
        lora_source: Callable[[], tuple[str, Path] | None] | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.tokenizer = FakeTokenizer()
        self.reply = reply
        self.delay_s = delay_s
        self.gate = gate
        self.files = None
        self.description = "a fake engine"
        self.loads: list[str] = []  # LoRA versions loaded, in order
        self.loras = LoraFollower(lora_source, lambda: 3, lambda name, version, path: self.loads.append(version),
                                  lambda name: None)  # fmt: skip
        self.calls: list[list[int]] = []
        self.hints: list[ReplyHints] = []
        self.holds: list[list[int]] = []  # prompt starts the worker asked it to read ahead

    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int:
        self.calls.append(list(input_ids))
        self.hints.append(hints)
        if self.gate is not None:
            self.gate.wait()
        text = self.reply(input_ids) if callable(self.reply) else self.reply
        words = text.split(" ")[:max_new_tokens]
        for i, word in enumerate(words):
            if self.delay_s:
                time.sleep(self.delay_s)
            on_text(word if i == 0 else " " + word)
        return len(words)

    def hold(self, input_ids: list[int], hints: ReplyHints, stop: Callable[[], bool]) -> int:
        self.holds.append(list(input_ids))
        return 0


class FakeEmbedder:
    """Bag-of-words hashing: texts that share words are similar, as with a real embedder."""

    dims = 512

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self.dims] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
            if not norm:
                out[row, 0] = 1.0
        return out


def fake_settings_overrides() -> dict[str, Any]:
    return {"tuning__min_similarity": 0.2}


class _FakeReply(dict):
    __hash__ = object.__hash__  # a handle: one reply, by identity


class FakeBatchingEngine(FakeEngine):
    """An engine of several slots (bot.generation.worker): every step writes one word of each reply begun, like
    llama.cpp's continuous batching. It records each step's batch and refuses to mix LoRA groups,
    as llama.cpp cannot; `fail_at_step` makes that step raise."""

    def __init__(self, *args: Any, slots: int = 4, fail_at_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slots = slots
        self.fail_at_step = fail_at_step
        self.steps: list[list[tuple[object, str | None]]] = []  # each step's (reply, its LoRA group)
        self._begun: list[_FakeReply] = []

    def group(self, hints: ReplyHints) -> object:
        return None if hints.base_only else self.loras.version

    def start(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> object:
        assert len(self._begun) < self.slots, "more replies than slots"
        group = self.group(hints)
        assert all(b["group"] == group for b in self._begun), "a LoRA reply and a base reply in one batch"
        self.calls.append(list(input_ids))
        self.hints.append(hints)
        text = self.reply(input_ids) if callable(self.reply) else self.reply
        reply = _FakeReply(words=text.split(" ")[:max_new_tokens], written=0, on_text=on_text, group=group)
        self._begun.append(reply)
        return reply

    def step(self) -> list[tuple[object, int]]:
        if self.gate is not None:
            self.gate.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        self.steps.append([(id(b), b["group"]) for b in self._begun])
        if self.fail_at_step == len(self.steps):
            raise RuntimeError("the engine broke")
        ended = []
        for reply in list(self._begun):
            word = reply["words"][reply["written"]]
            reply["on_text"](word if reply["written"] == 0 else " " + word)
            reply["written"] += 1
            if reply["written"] == len(reply["words"]):
                self._begun.remove(reply)
                ended.append((reply, reply["written"]))
        return ended

    def abort(self) -> None:
        self._begun.clear()
