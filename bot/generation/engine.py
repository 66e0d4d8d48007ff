"""The engine protocol: what the generation worker and the core use of whatever writes the tokens.

Three engines implement it (transformers: hf_engine.py, llama.cpp: llama_engine.py, vLLM:
vllm_engine.py); the tests' fakes and the gate's cache of base replies do too. Every attribute the
worker, the core or a command reads is named here, so nothing reaches into an engine with getattr.
Every engine is a batching engine to the worker: one that writes a reply in one call is one with a
single slot (`OneAtATime`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.types import ReplyStats

if TYPE_CHECKING:
    from bot.generation.lora_follow import LoraFollower
    from bot.generation.model_files import ModelFiles


@dataclass(frozen=True)
class Generated:
    """The end of one generation."""

    text: str
    lora_version: str | None
    stats: ReplyStats  # times from the moment the worker started it (the core's Reply: latency from the message)
    started_after_s: float  # time spent waiting in the queue
    stopped: bool = False  # the asker stopped it (a Stop button): `text` is what was written until then


@dataclass(frozen=True)
class ReplyHints:
    """What the core knows about one reply that changes how it is generated."""

    favored: tuple[int, ...] = ()  # token ids raised by `tuning.answer_bias`: the best verified answer's
    base_only: bool = False  # write it with the base model even while a LoRA serves (`tuning.lora_for`)


NO_HINTS = ReplyHints()


class ReplyStopped(Exception):
    """Raised by a reply's `on_text` once nobody waits for it (its stream was dropped or stopped): the
    engine ends that reply there, as if it had written its last token, and goes on with the others."""


class Engine(Protocol):
    """Writes replies, up to `slots` together (continuous batching): `start` begins one, each `step`
    decodes every reply begun and a reply joins as soon as a slot is free and leaves when it ends."""

    tokenizer: Any
    files: ModelFiles | None  # the base model's files (None: not known here, e.g. a fake)
    description: str  # what `status` shows: the engine, its model file or quantization, the device
    slots: int  # replies written together at most
    loras: LoraFollower  # which LoRA serves, and loading, swapping and unloading them

    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int:
        """One reply on its own, calling on_text with each new piece of text; returns the number of
        new tokens (a one-slot engine's step; outside the worker: the gate's cache, benchmarks)."""
        ...

    def hold(self, input_ids: list[int], hints: ReplyHints, stop: Callable[[], bool]) -> int:
        """Read the likely start of a next prompt (a conversation's system prompt and turns so far)
        into the KV cache a later reply reuses (bot/generation/prompt_reuse.py), a chunk at a time
        until `stop()` says someone is waiting; returns the tokens held (0: it keeps no prompts)."""
        ...

    def group(self, hints: ReplyHints) -> object:
        """Replies of one group can share a batch (llama.cpp: the LoRA applies to the whole batch)."""
        ...

    def start(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints
    ) -> object:
        """Begin a reply (decoded by the next `step`); returns its handle."""
        ...

    def step(self) -> list[tuple[object, int]]:
        """One decoding step for every reply begun; returns those that ended, with their token counts."""
        ...

    def abort(self) -> None:
        """Forget every reply in progress (after a failed step)."""
        ...


@dataclass(eq=False)  # a handle: one reply, by identity
class _Begun:
    input_ids: list[int]
    max_new_tokens: int
    on_text: Callable[[str], None]
    hints: ReplyHints


class OneAtATime(ABC):
    """An engine that writes a whole reply in one call (`generate`), as a batching engine with one
    slot: `start` keeps the reply and the next `step` writes all of it. The worker then serves every
    engine the same way, and the one-slot `step` is simply a long one."""

    slots = 1
    _begun: _Begun | None = None  # the reply `start` kept (a class default: subclasses keep their own __init__)

    @abstractmethod
    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int: ...

    def group(self, hints: ReplyHints) -> object:
        return None  # any: a batch of one shares nothing

    def start(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> object:
        assert self._begun is None, "one reply at a time"
        self._begun = _Begun(input_ids, max_new_tokens, on_text, hints)
        return self._begun

    def step(self) -> list[tuple[object, int]]:
        begun, self._begun = self._begun, None
        if begun is None:
            return []
        try:
            return [(begun, self.generate(begun.input_ids, begun.max_new_tokens, begun.on_text, begun.hints))]
        except ReplyStopped:
            return [(begun, 0)]

    def abort(self) -> None:
        self._begun = None
