"""The language model: loading (4-bit), streaming generation on one worker, live LoRA swap.

One model lives in memory and one worker thread runs it. Requests wait in a fair queue and see
their position. LoRA swaps run on the same worker between two generations, so a swap can never
change the weights under a reply that is being written.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bot import metrics
from bot.config import Settings
from bot.cpu_packing import PackingGuard
from bot.decoding import STOP_STRINGS, clean_reply, reply_rules
from bot.model_files import ModelFiles, load_4bit
from bot.queueing import FairQueue
from bot.types import Queued, Token

log = logging.getLogger(__name__)
T = TypeVar("T")
_ADAPTER_SEP = "__"  # adapter name = version + this + a hash of its directory


def lora_name(version: str, path: Path) -> str:
    """The name a LoRA is loaded under. A version's name is unique in one registry only: the name
    carries its directory too, so a v0001 of another registry (a recreated data dir, a test) is
    never mistaken for it."""
    return f"{version}{_ADAPTER_SEP}{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"


class LoadedLoras(list[str]):
    """The LoRA names a model holds, least recently used first."""

    def use(self, name: str, keep: int) -> list[str]:
        """`name` becomes the most recently used (added if new); returns the names to unload so
        that at most `keep` stay (read from the settings at each swap: they can change)."""
        if name in self:
            self.remove(name)
        self.append(name)
        evicted = self[: max(0, len(self) - keep)]
        del self[: len(evicted)]
        return evicted


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

    favored: tuple[int, ...] = ()  # token ids raised by `settings.answer_bias`: the best verified answer's
    base_only: bool = False  # write it with the base model even while a LoRA serves (`settings.lora_for`)


NO_HINTS = ReplyHints()


class Backend(Protocol):
    tokenizer: Any

    @property
    def lora_version(self) -> str | None: ...

    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int:
        """Generate, calling on_text with each new piece of text; returns the number of new tokens."""
        ...

    def sync_lora(self) -> None:
        """Bring the active LoRA in line with the registry; runs on the worker between jobs."""
        ...


@dataclass
class _Job:
    owner: str
    input_ids: list[int]
    max_new_tokens: int
    hints: ReplyHints
    events: queue.Queue[Any]
    submitted: float
    started: threading.Event


class GenerationService:
    """Runs a Backend on one worker thread; thread-safe for any number of callers."""

    def __init__(self, backend: Backend, sync_interval_s: float = 1.0) -> None:
        self.backend = backend
        self._queue: FairQueue[_Job] = FairQueue()
        self._control: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._closing = threading.Event()
        self._busy = threading.Event()
        self._sync_interval_s = sync_interval_s
        self._worker = threading.Thread(target=self._run, name="generation", daemon=True)
        metrics.watch_queue(self.queued)
        metrics.serving(backend.lora_version)
        self._worker.start()

    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    def queued(self) -> int:
        return len(self._queue)

    def stream(
        self, owner: str, input_ids: list[int], max_new_tokens: int, hints: ReplyHints = NO_HINTS
    ) -> Iterator[Queued | Token | Generated]:
        """Queued(position) while waiting, Token(delta) as text comes, then Generated."""
        job = _Job(owner, input_ids, max_new_tokens, hints, queue.Queue(), time.monotonic(), threading.Event())
        self._queue.put(owner, job)
        last_position = 0
        while not job.started.is_set():
            position = self._queue.position(job)
            if position is None:
                break
            waiting_behind = position + (1 if self._busy.is_set() else 0)
            if waiting_behind != last_position and waiting_behind > 0:
                last_position = waiting_behind
                yield Queued(waiting_behind)
            self._queue.wait_changed(0.25)
        while True:
            event = job.events.get()
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, Generated):
                return

    def run_exclusive(self, action: Callable[[], T]) -> Future[T]:
        """Run `action` on the worker between two generations (LoRA loads and swaps)."""
        future: Future[T] = Future()
        self._control.put((action, future))
        return future

    def request_sync(self) -> Future[None]:
        return self.run_exclusive(self._sync_lora)

    def _sync_lora(self) -> None:
        before = self.backend.lora_version
        self.backend.sync_lora()
        if self.backend.lora_version != before:
            metrics.serving(self.backend.lora_version)
            if (swap_s := getattr(self.backend, "last_swap_s", None)) is not None:
                metrics.SWAP_SECONDS.observe(swap_s)

    def close(self) -> None:
        self._closing.set()
        self._worker.join(timeout=10)

    def _run(self) -> None:
        next_sync = 0.0
        while not self._closing.is_set():
            self._run_control()
            if time.monotonic() >= next_sync:
                # Watching the registry lets another process (a trainer, an admin CLI) swap us.
                self._safely(self._sync_lora)
                next_sync = time.monotonic() + self._sync_interval_s
            job = self._queue.get(timeout=0.05)
            if job is not None:
                self._serve(job)

    def _run_control(self) -> None:
        while True:
            try:
                action, future = self._control.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(action())
                except BaseException as exc:
                    future.set_exception(exc)

    def _safely(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception:
            log.exception("LoRA sync failed; the current LoRA keeps serving")

    def _serve(self, job: _Job) -> None:
        self._busy.set()
        job.started.set()
        start = time.monotonic()
        first: list[float] = []

        def on_text(text: str) -> None:
            if text:
                if not first:
                    first.append(time.monotonic() - start)
                job.events.put(Token(text))

        try:
            version = None if job.hints.base_only else self.backend.lora_version
            pieces: list[str] = []
            count = self.backend.generate(
                job.input_ids, job.max_new_tokens, lambda t: (pieces.append(t), on_text(t)), job.hints
            )
            job.events.put(
                Generated(
                    text=clean_reply("".join(pieces)),
                    lora_version=version,
                    prompt_tokens=len(job.input_ids),
                    completion_tokens=count,
                    first_token_s=first[0] if first else None,
                    started_after_s=start - job.submitted,
                )
            )
        except BaseException as exc:
            log.exception("generation failed")
            job.events.put(RuntimeError(f"generation failed: {exc}"))
        finally:
            self._busy.clear()


def pick_device(settings: Settings) -> str:
    if settings.device != "auto":
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HFBackend:
    """A transformers causal LM, 4-bit NF4 through bitsandbytes by default, with peft LoRAs."""

    def __init__(
        self,
        settings: Settings,
        files: ModelFiles,
        lora_source: Callable[[], tuple[str, Path] | None] | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, StopStringCriteria

        self.settings = settings
        self.files = files
        self.device = pick_device(settings)
        self.lora_source = lora_source
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(files.path)
        compute_dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        if settings.quantize == "4bit":
            self.model: Any = load_4bit(settings, files, compute_dtype, self.device)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(files.path, dtype=compute_dtype, device_map=self.device)
        self.model.eval()
        # Before the first forward: bitsandbytes may repack the 4-bit weights for its CPU kernel then.
        self._packing = PackingGuard(self.model)
        self.load_seconds = time.monotonic() - started
        self.memory_bytes = int(self.model.get_memory_footprint())
        self._stop_ids = self._end_of_turn_ids()
        # The examples' "Q:/A:" layout can leak: a reply that starts a new "Q:" has ended. Built once:
        # transformers' stop-string tables take ~85 ms, which `stop_strings=` would pay every reply.
        self._stop_strings = StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(STOP_STRINGS))
        self._loaded = LoadedLoras()  # LoRAs in memory
        self._active: str | None = None
        self.last_swap_s: float | None = None
        log.info(
            "model %s loaded on %s in %.1f s (%.0f MB)",
            files.model_id,
            self.device,
            self.load_seconds,
            self.memory_bytes / 1e6,
        )

    def _end_of_turn_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id:
                ids.add(token_id)
        return sorted(i for i in ids if i is not None)

    @property
    def lora_version(self) -> str | None:
        return self._active

    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int:
        import torch
        from transformers import StoppingCriteriaList, TextStreamer

        class _Streamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                on_text(text)

        streamer = _Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        ids = torch.tensor([input_ids], device=self.model.device)
        sampling = self.settings.temperature > 0
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sampling,
            "eos_token_id": self._stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id or self._stop_ids[0],
            "streamer": streamer,
        }
        if sampling:
            options["temperature"] = self.settings.temperature
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        rules = reply_rules(self.settings, len(input_ids), hints.favored)
        if rules:
            from transformers import LogitsProcessorList

            options["logits_processor"] = LogitsProcessorList(rules)
        options["stopping_criteria"] = StoppingCriteriaList([self._stop_strings])
        with torch.inference_mode(), self._lora_context(hints.base_only):
            output = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)
        return int(output.shape[1] - ids.shape[1])

    def _lora_context(self, base_only: bool) -> Any:
        import contextlib

        if self._loaded and (self._active is None or base_only):
            return self.model.disable_adapter()  # base model while LoRAs stay loaded for rollback
        return contextlib.nullcontext()

    # LoRA management (called on the generation worker only) -----------------------------------

    def sync_lora(self) -> None:
        wanted = self.lora_source() if self.lora_source else None
        version = wanted[0] if wanted else None
        if version == self._active:
            return
        started = time.monotonic()
        if wanted is None:
            self._active = None
        else:
            self._activate(*wanted)
        self.last_swap_s = time.monotonic() - started
        log.info("now serving LoRA %s (swap %.3f s)", version or "none (base model)", self.last_swap_s)

    def _activate(self, version: str, path: Path) -> None:
        from peft import PeftModel

        name = lora_name(version, path)
        if name not in self._loaded:
            self.restore_4bit_layout()  # peft reads the 4-bit layers: give it their original format
            if not self._loaded:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name, is_trainable=False)
            else:
                self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
        self.model.set_adapter(name)
        self._active = version
        for oldest in self._loaded.use(name, self.settings.training.keep_loaded):
            self.restore_4bit_layout()
            self.model.delete_adapter(oldest)
            log.info("unloaded LoRA %s from memory (still on disk)", oldest)

    def restore_4bit_layout(self) -> int:
        """The 4-bit layers back in their load-time format, for peft or a trainer to read (cpu_packing)."""
        return self._packing.unpack()

    def loaded_loras(self) -> list[str]:
        """The versions in memory, least recently used first."""
        return [name.split(_ADAPTER_SEP)[0] for name in self._loaded]
