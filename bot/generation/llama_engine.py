"""The fast CPU engine: llama.cpp (llama-cpp-python) on the default model's own GGUF file.

Several replies are decoded together in one llama.cpp context (continuous batching: a reply joins
at the next step and leaves when it ends, each in its own sequence of the KV cache). The bot keeps
its own decoding: each step's logits come back here and go through the same `ReplyRules` as the
transformers engine (answer bias, reply-only repetition rules), so greedy replies follow the same
rules on both. LoRAs are the pipeline's peft adapters, converted to GGUF once (bot/generation/lora_gguf.py),
loaded next to the base weights and applied per batch: a LoRA reply and a base-model reply never
share a batch, and a swap happens only between replies, as on the other engines.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bot.config import Settings
from bot.generation.decoding import STOP_STRINGS, ReplyRules, end_of_turn_ids
from bot.generation.engine import NO_HINTS, ReplyHints, ReplyStopped
from bot.generation.llama_cpu import ggml_cpu_backend, load_llama_cpp, model_params_for_this_cpu
from bot.generation.llama_sequences import HeldPrompts, SlotReply, TextStream
from bot.generation.lora_follow import LoraFollower, LoraSource
from bot.generation.lora_gguf import gguf_lora_path
from bot.generation.model_files import ModelFiles, default_gguf_path, model_cache_dir
from bot.generation.prompt_reuse import CHUNK, chunk_ends

log = logging.getLogger(__name__)


def serving_gguf(settings: Settings, source: Path) -> Path:
    """The GGUF llama.cpp serves (`tuning.served_weights`): by default the default model's Q4_1 file
    rewritten once as F16 in the model cache (about a second). F16 holds Q4_1's values exactly, and
    llama.cpp multiplies F16 weights with F16 activations; with Q8_0 weights it rounds every
    activation to 8 bits as well, and that cost the default engine answers: on the library set,
    examples only, 61.7% (Q8_0) against 68.3% (F16, the same as F32) and 75.0% on transformers; a
    taught answer in a short conversation was lost on an AVX512 CPU. `q4_1` serves the shipped file
    as it is, the fastest (docs/cpu_speed.md has the figures, speed and real phrasings included)."""
    weights = settings.tuning.served_weights
    if weights == "q4_1":
        return source
    llama_cpp = load_llama_cpp()

    target = model_cache_dir(settings) / f"{source.stem}.{weights}.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_suffix(f".{os.getpid()}.tmp")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = {"f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[weights]
        params.allow_requantize = True
        params.nthread = settings.threads or os.cpu_count() or 1
        started = time.monotonic()
        if llama_cpp.llama_model_quantize(str(source).encode(), str(staging).encode(), ctypes.byref(params)) != 0:
            staging.unlink(missing_ok=True)
            raise RuntimeError(f"llama.cpp cannot rewrite {source} as {weights.upper()}")
        staging.chmod(0o644)  # read by a bot running as another user than the one that built the cache
        staging.replace(target)
        log.info("wrote %s for llama.cpp in %.1f s (once)", target.name, time.monotonic() - started)
    return target


class LlamaCppEngine:
    """An Engine of several slots (bot.generation.worker) on llama.cpp; every method runs on the generation worker."""

    def __init__(
        self,
        settings: Settings,
        files: ModelFiles,
        gguf: Path,
        lora_source: LoraSource | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        llama_cpp = load_llama_cpp()
        self._llama = llama_cpp
        self.settings = settings
        self.files = files
        self.slots = settings.parallel_replies
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(files.path)
        self._model_config = json.loads((Path(files.path) / "config.json").read_text())
        self.cpu = ggml_cpu_backend(llama_cpp)
        llama_cpp.llama_backend_init()
        model_params = model_params_for_this_cpu(llama_cpp)
        self._model = llama_cpp.llama_model_load_from_file(str(gguf).encode(), model_params)
        if not self._model:
            raise RuntimeError(f"llama.cpp cannot load {gguf}")
        params = llama_cpp.llama_context_default_params()
        params.n_seq_max = self.slots
        self._context = settings.context_tokens  # each reply's own cache holds this many tokens
        params.n_ctx = self._context * self.slots
        params.n_batch = max(self._context, self.slots)  # a whole prompt in one call
        params.n_ubatch = 512
        # A cache of its own per reply, read by its attention alone: with one shared cache the same
        # reply took a different float path depending on who else was asking (measured: greedy
        # replies diverged).
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = settings.threads or os.cpu_count() or 1
        params.no_perf = True
        # llama.cpp's default (auto) turns flash attention on, and on the CPU it costs a reply a fifth
        # of its speed: 25.0 against 19.7 ms a token 500 tokens in, prompts read alike (492 / 499
        # tokens/s), and plain llama.cpp (`Llama`) runs without it. Replies unchanged on the acme and
        # general sets (the same 30/40 and 54/56, the same misses word for word).
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp cannot create a context (memory?)")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        self._vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self._model))
        self._stop_ids = set(end_of_turn_ids(self.tokenizer))
        self._held = HeldPrompts(self.slots)  # free slots and the prompts their KV caches still hold
        self._sequences: list[SlotReply] = []
        self.loras = LoraFollower(lora_source, lambda: self.settings.tuning.keep_loaded, self._load_lora,
                                 self._unload_lora)  # fmt: skip
        self._adapters: dict[str, Any] = {}  # LoRA name -> llama.cpp adapter
        self._applied: str | None = None  # the LoRA name set on the context now
        self._rng = np.random.default_rng()
        self.description = f"llama.cpp, {gguf.name} on the CPU ({self.cpu}), {self.slots} replies at once"
        self.load_seconds = time.monotonic() - started
        self.memory_bytes = int(llama_cpp.llama_model_size(self._model))
        log.info(
            "model %s loaded in llama.cpp in %.1f s (%d replies at once)", gguf.name, self.load_seconds, self.slots
        )

    @classmethod
    def for_default_model(
        cls, settings: Settings, files: ModelFiles, lora_source: LoraSource | None = None
    ) -> LlamaCppEngine:
        """On the default model's GGUF (as F16: `serving_gguf`), the one llama.cpp can serve."""
        return cls(settings, files, serving_gguf(settings, default_gguf_path()), lora_source=lora_source)

    # Decoding ------------------------------------------------------------------------------------

    def group(self, hints: ReplyHints) -> object:
        return None if hints.base_only else self.loras.name

    def start(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> object:
        if not input_ids:
            raise ValueError("an empty prompt")
        if len(input_ids) + max_new_tokens > self._context:
            raise ValueError(f"{len(input_ids)} prompt tokens and {max_new_tokens} to write exceed {self._context}")
        wanted = self.group(hints)
        if wanted != self._applied:
            assert not self._sequences, "the LoRA changes only between batches"
            self._apply_lora(wanted)  # type: ignore[arg-type]
        rules = ReplyRules.for_reply(self.settings, len(input_ids), hints.favored)
        prompt = list(input_ids)
        slot, kept = self._held.take(wanted, prompt)
        self._llama.llama_memory_seq_rm(self._memory, slot, kept, -1)  # what the slot held past the common start
        sequence = SlotReply(slot, prompt, wanted, prompt[kept:], max_new_tokens, rules, on_text,
                             TextStream(self.tokenizer), position=kept)  # fmt: skip
        self._sequences.append(sequence)
        return sequence

    def hold(self, input_ids: list[int], hints: ReplyHints, stop: Callable[[], bool]) -> int:
        assert not self._sequences, "a prompt start is read only between replies"
        wanted = self.group(hints)
        if wanted != self._applied:
            self._apply_lora(wanted)  # type: ignore[arg-type]
        prompt = list(input_ids[: self._context])
        slot, read = self._held.take(wanted, prompt)
        self._llama.llama_memory_seq_rm(self._memory, slot, read, -1)
        sequence = SlotReply(slot, prompt, wanted, prompt[read:], 0, None, lambda _text: None,
                             TextStream(self.tokenizer), position=read)  # fmt: skip
        try:
            for end in chunk_ends(read, len(prompt) + 1):  # whole chunks only: a reply reads the rest
                if stop():
                    break
                self._decode([sequence], CHUNK)
                read = end
        except BaseException:
            self._held.give_back(slot, wanted, [])  # its cache is not what it says
            raise
        self._held.give_back(slot, wanted, prompt[:read])
        return read

    def step(self) -> list[tuple[object, int]]:
        """Read each new reply's prompt, each in a call of its own, then write one token of every
        reply in one batch. Prompts are never batched together: how a prompt is split into matrix
        tiles changes the float sums, so a prompt read beside others could start another reply
        (measured); a batch of one token per reply gives each the sums it would get alone."""
        ended: list[tuple[object, int]] = []
        for sequence in [s for s in self._sequences if s.reading_prompt]:
            for _ in chunk_ends(sequence.position, len(sequence.prompt)):  # whole aligned chunks: prompt_reuse.py
                self._decode([sequence], CHUNK)
            ended += self._decode([sequence])
        writing = [s for s in self._sequences if s.reply]  # (those that ended have left)
        if writing:
            ended += self._decode(writing)
        return ended

    def _decode(self, sequences: list[SlotReply], chunk: int | None = None) -> list[tuple[object, int]]:
        """Feed the sequences' pending tokens in one llama.cpp call and choose each next token;
        returns the sequences that ended (their slots freed). With `chunk`, feed only that many of
        one prompt's tokens and choose nothing yet."""
        batch = self._batch
        batch.n_tokens = 0
        last: list[int] = []
        for sequence in sequences:
            feeding = sequence.pending[:chunk] if chunk else sequence.pending
            for offset, token in enumerate(feeding):
                index = batch.n_tokens
                batch.token[index] = token
                batch.pos[index] = sequence.position + offset
                batch.n_seq_id[index] = 1
                batch.seq_id[index][0] = sequence.seq_id
                batch.logits[index] = chunk is None and offset == len(feeding) - 1
                batch.n_tokens += 1
            last.append(batch.n_tokens - 1)
            sequence.position += len(feeding)
            del sequence.pending[: len(feeding)]
        status = self._llama.llama_decode(self._ctx, batch)
        if status != 0:
            for sequence in sequences:
                sequence.prompt = []  # its cache is not what it says: hold nothing of it
            raise RuntimeError(f"llama.cpp decode failed (status {status})")
        if chunk:
            return []
        ended: list[tuple[object, int]] = []
        for sequence, index in zip(sequences, last, strict=True):
            logits = np.ctypeslib.as_array(self._llama.llama_get_logits_ith(self._ctx, index), shape=(self._vocab,))
            if self._next(sequence, logits.copy()):
                ended.append((sequence, len(sequence.reply)))
        for sequence, _count in ended:
            self._end(sequence)  # type: ignore[arg-type]
        return ended

    def _next(self, sequence: SlotReply, logits: np.ndarray) -> bool:
        """Choose the next token; True when the reply has ended."""
        if sequence.rules is not None:
            sequence.rules.apply(logits, sequence.reply)
        token = self._choose(logits)
        sequence.reply.append(token)
        if token in self._stop_ids:
            return True
        try:
            sequence.on_text(sequence.text.push(token))
        except ReplyStopped:
            return True
        if any(stop in sequence.text.text for stop in STOP_STRINGS):
            return True
        sequence.pending.append(token)
        return len(sequence.reply) >= sequence.max_new_tokens

    def _choose(self, logits: np.ndarray) -> int:
        temperature = self.settings.tuning.temperature
        if temperature <= 0:
            return int(np.argmax(logits))
        scaled = (logits - logits.max()) / temperature
        probabilities = np.exp(scaled)
        return int(self._rng.choice(len(logits), p=probabilities / probabilities.sum()))

    def _end(self, sequence: SlotReply) -> None:
        """Free the slot; its cache keeps the prompt's part that was read, for the next reply to reuse."""
        self._sequences.remove(sequence)
        # A reply that wrote a token had read its whole prompt; one stopped before had not.
        self._held.give_back(sequence.seq_id, sequence.group, sequence.prompt if sequence.reply else [])

    def abort(self) -> None:
        for sequence in list(self._sequences):
            self._end(sequence)

    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int:
        """One reply on its own (nothing else decoding), for callers outside the generation service."""
        handle = self.start(input_ids, max_new_tokens, on_text, hints)
        try:
            while True:
                for ended, count in self.step():
                    if ended is handle:
                        return count
        finally:
            self.abort()

    # LoRAs in memory (bot/generation/lora_follow.py decides when; they apply per batch) ---------------------

    def _load_lora(self, name: str, version: str, path: Path) -> None:
        # In the data directory, not the model cache: that one is read-only in the image (every retrain
        # failed there), and converted LoRAs belong to the registry's data, not to the base weights.
        converted = gguf_lora_path(path, self.settings.cache_dir / "lora-gguf", self._model_config)
        adapter = self._llama.llama_adapter_lora_init(self._model, str(converted).encode())
        if not adapter:
            raise RuntimeError(f"llama.cpp cannot load the LoRA {version} ({converted})")
        self._adapters[name] = adapter

    def _unload_lora(self, name: str) -> None:
        self._held.forget(name)  # a later LoRA may be loaded under the same handle
        if self._applied == name:
            self._apply_lora(None)
        self._llama.llama_adapter_lora_free(self._adapters.pop(name))

    def _apply_lora(self, name: str | None) -> None:
        if name is None:
            status = self._llama.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            adapters = (self._llama.llama_adapter_lora_p_ctypes * 1)(self._adapters[name])
            scales = (ctypes.c_float * 1)(1.0)
            status = self._llama.llama_set_adapters_lora(self._ctx, adapters, 1, scales)
        if status != 0:
            raise RuntimeError(f"llama.cpp cannot apply the LoRA {name} (status {status})")
        self._applied = name

    def close(self) -> None:
        self._llama.llama_batch_free(self._batch)
        self._llama.llama_free(self._ctx)
        self._llama.llama_model_free(self._model)
