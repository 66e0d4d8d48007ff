"""The transformers engine: the model in 4-bit NF4 through bitsandbytes (CPU or CUDA), peft LoRAs.

The path that trains: the training process loads its model through this class too. LoRAs stay
loaded for a fast rollback; a swap runs on the generation worker between replies. The KV cache of the
last prompt is kept, and the next prompt reads only what it does not share with it (a conversation's
system prompt and earlier turns), in whole aligned chunks so the reply is the one a cold read gives
(bot/generation/prompt_reuse.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.generation.cpu_packing import PackingGuard
from bot.generation.decoding import STOP_STRINGS, ReplyRules, end_of_turn_ids
from bot.generation.engine import NO_HINTS, OneAtATime, ReplyHints
from bot.generation.lora_follow import LoraFollower, LoraSource
from bot.generation.model_files import ModelFiles, load_4bit
from bot.generation.prompt_reuse import CHUNK, chunk_ends, reusable
from bot.generation.tokenizer_lock import tokenizer_lock

log = logging.getLogger(__name__)
# A GPU reads a chunk in about the time of one token (its cost is the calls, not the tokens), so its
# prompts are read in longer chunks: fewer calls cold, a coarser reuse.
CUDA_CHUNK = 256


@dataclass
class _HeldPrompt:
    group: str | None  # the LoRA it was read with (None: the base model): its KV depends on it
    prompt: list[int]
    cache: Any  # transformers' DynamicCache: the prompt, then the reply's tokens


def pick_device(settings: Settings) -> str:
    if settings.tuning.device != "auto":
        return settings.tuning.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HFEngine(OneAtATime):
    """A transformers causal LM, 4-bit NF4 through bitsandbytes by default, with peft LoRAs."""

    def __init__(
        self,
        settings: Settings,
        files: ModelFiles,
        lora_source: LoraSource | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, StopStringCriteria

        self.settings = settings
        self.files = files
        self.device = pick_device(settings)
        self.description = f"transformers, {settings.tuning.quantize} on {self.device}"
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(files.path)
        compute_dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        if settings.tuning.quantize == "4bit":
            self.model: Any = load_4bit(settings, files, compute_dtype, self.device)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(files.path, dtype=compute_dtype, device_map=self.device)
        self.model.eval()
        # Before the first forward: bitsandbytes may repack the 4-bit weights for its CPU kernel then.
        self._packing = PackingGuard(self.model)
        self._chunk = CHUNK if self.device == "cpu" else CUDA_CHUNK
        self._held: _HeldPrompt | None = None
        self.load_seconds = time.monotonic() - started
        self.memory_bytes = int(self.model.get_memory_footprint())
        self._stop_ids = end_of_turn_ids(self.tokenizer)
        # The examples' "Q:/A:" layout can leak: a reply that starts a new "Q:" has ended. Built once:
        # transformers' stop-string tables take ~85 ms, which `stop_strings=` would pay every reply.
        self._stop_strings = StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(STOP_STRINGS))
        self.loras = LoraFollower(lora_source, lambda: self.settings.tuning.keep_loaded, self._load_lora,
                                 self._unload_lora, self._use_lora)  # fmt: skip
        log.info(
            "model %s loaded on %s in %.1f s (%.0f MB)",
            files.model_id,
            self.device,
            self.load_seconds,
            self.memory_bytes / 1e6,
        )

    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int:
        import torch
        from transformers import StoppingCriteriaList, TextStreamer

        class _Streamer(TextStreamer):
            def put(self, value: Any) -> None:  # it decodes: not while a prompt is being tokenized
                with tokenizer_lock(self.tokenizer):
                    super().put(value)

            def end(self) -> None:
                with tokenizer_lock(self.tokenizer):
                    super().end()

            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                on_text(text)

        streamer = _Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        ids = torch.tensor([input_ids], device=self.model.device)
        sampling = self.settings.tuning.temperature > 0
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sampling,
            "eos_token_id": self._stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id or self._stop_ids[0],
            "streamer": streamer,
        }
        if sampling:
            options["temperature"] = self.settings.tuning.temperature
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        rules = ReplyRules.for_reply(self.settings, len(input_ids), hints.favored)
        if rules:
            from transformers import LogitsProcessorList

            options["logits_processor"] = LogitsProcessorList([rules.processor()])
        options["stopping_criteria"] = StoppingCriteriaList([self._stop_strings])
        group = self._group(hints.base_only)
        cache, kept = self._take_cache(group, input_ids)
        with torch.inference_mode(), self._lora_context(hints.base_only):
            for end in chunk_ends(kept, len(input_ids), self._chunk):
                self.model(input_ids=ids[:, end - self._chunk : end], cache=cache, use_cache=True)
            output = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache, **options)
        self._held = _HeldPrompt(group, list(input_ids), cache)  # not on an error: its cache is unknown then
        return int(output.shape[1] - ids.shape[1])

    def hold(self, input_ids: list[int], hints: ReplyHints, stop: Callable[[], bool]) -> int:
        import torch

        group = self._group(hints.base_only)
        cache, read = self._take_cache(group, input_ids)
        ids = torch.tensor([input_ids], device=self.model.device)
        with torch.inference_mode(), self._lora_context(hints.base_only):
            for end in chunk_ends(read, len(input_ids) + 1, self._chunk):  # whole chunks only
                if stop():
                    break
                self.model(input_ids=ids[:, read:end], cache=cache, use_cache=True)
                read = end
        self._held = _HeldPrompt(group, list(input_ids[:read]), cache)
        return read

    def _group(self, base_only: bool) -> str | None:
        """The LoRA a reply is read with (None: the base model), as `_lora_context` applies it."""
        if not self.loras.loaded() or self.loras.version is None or base_only:
            return None
        return self.loras.name

    def _take_cache(self, group: str | None, prompt: list[int]) -> tuple[Any, int]:
        """A KV cache for `prompt` and how many of its tokens it holds: the last prompt's, cut to the
        whole chunks they share, or a new one."""
        from transformers import DynamicCache

        held, self._held = self._held, None  # taken: it is written into from here on
        if held is not None and held.group == group:
            kept = reusable(held.prompt, prompt, self._chunk)
            if kept:
                surplus = held.cache.get_seq_length() - kept
                if surplus:
                    held.cache.crop(-surplus)  # (transformers takes the count to drop)
                return held.cache, kept
        return DynamicCache(config=self.model.config), 0

    def _lora_context(self, base_only: bool) -> Any:
        import contextlib

        if self.loras.loaded() and (self.loras.version is None or base_only):
            return self.model.disable_adapter()  # base model while LoRAs stay loaded for rollback
        return contextlib.nullcontext()

    # LoRAs in memory (bot/generation/lora_follow.py decides when) -------------------------------------------

    def _load_lora(self, name: str, version: str, path: Path) -> None:
        from peft import PeftModel

        self.restore_4bit_layout()  # peft reads the 4-bit layers: give it their original format
        self._held = None  # the model is wrapped or gains an adapter: read everything again
        if not self.loras.loaded():
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name, is_trainable=False)
        else:
            self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)

    def _use_lora(self, name: str) -> None:
        self.model.set_adapter(name)

    def _unload_lora(self, name: str) -> None:
        self._held = None  # a later LoRA may be loaded under the same name
        self.restore_4bit_layout()
        self.model.delete_adapter(name)

    def restore_4bit_layout(self) -> int:
        """The 4-bit layers back in their load-time format, for peft or a trainer to read (cpu_packing)."""
        return self._packing.unpack()
