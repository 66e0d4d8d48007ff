"""The engine protocol: what the generation worker and the core use of whatever writes the tokens.

Three engines implement it (transformers: hf_engine.py, llama.cpp: llama_engine.py, vLLM:
vllm_engine.py); the tests' fakes and the gate's cache of base replies do too. Every attribute the
worker, the core or a command reads is named here, so nothing reaches into an engine with getattr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.generation.lora_follow import LoraFollower
    from bot.generation.model_files import ModelFiles


@dataclass(frozen=True)
class Generated:
    """The end of one generation."""

    text: str
    lora_version: str | None
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None  # from the moment the worker started it
    started_after_s: float  # time spent waiting in the queue


@dataclass(frozen=True)
class ReplyHints:
    """What the core knows about one reply that changes how it is generated."""

    favored: tuple[int, ...] = ()  # token ids raised by `tuning.answer_bias`: the best verified answer's
    base_only: bool = False  # write it with the base model even while a LoRA serves (`tuning.lora_for`)


NO_HINTS = ReplyHints()


class Engine(Protocol):
    """Writes the tokens of one reply at a time (`slots` 1) or, as a BatchingEngine, several."""

    tokenizer: Any
    files: ModelFiles | None  # the base model's files (None: not known here, e.g. a fake)
    description: str  # what `status` shows: the engine, its model file or quantization, the device
    slots: int  # replies written together at most: 1 unless it is a BatchingEngine
    loras: LoraFollower  # which LoRA serves, and loading, swapping and unloading them

    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int:
        """Generate, calling on_text with each new piece of text; returns the number of new tokens."""
        ...

    def hold(self, input_ids: list[int], hints: ReplyHints, stop: Callable[[], bool]) -> int:
        """Read the likely start of a next prompt (a conversation's system prompt and turns so far)
        into the KV cache a later reply reuses (bot/generation/prompt_reuse.py), a chunk at a time
        until `stop()` says someone is waiting; returns the tokens held (0: it keeps no prompts)."""
        ...


class BatchingEngine(Engine, Protocol):
    """An engine that decodes several replies at once, one step for all of them (continuous
    batching): a reply joins as soon as a slot is free and leaves when it ends."""

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
