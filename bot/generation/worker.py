"""Streaming generation on one worker, whatever the engine, and live LoRA swaps.

One model lives in memory and one worker thread runs it (the engines: bot/generation/hf_engine.py,
bot/generation/llama_engine.py, bot/generation/vllm_engine.py). Requests wait in a fair queue and see their position.
Every engine writes its replies in slots, one loop for all: llama.cpp several at once, each joining
at the next step; an engine that writes one reply at a time has one slot (engine.OneAtATime). LoRA
swaps run on the same worker while no reply is being written, so a swap can never change the
weights under a reply.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bot.generation.decoding import clean_reply
from bot.generation.engine import NO_HINTS, Engine, Generated, ReplyHints, ReplyStopped
from bot.generation.lora_follow import LoraUnavailable
from bot.generation.queueing import FairQueue
from bot.ops import metrics
from bot.types import Queued, ReplyStats, Token

log = logging.getLogger(__name__)
T = TypeVar("T")
# A conversation's next start is read only once the engine has had nothing to do for this long: a
# person takes seconds to read a reply and type, while a program asking one question after another
# (`bot eval`, the training gate) sends the next within milliseconds and would wait for the reading.
READ_AHEAD_AFTER_S = 0.25
# How long a dropped stream waits for the worker to let its reply go (it stops at its next token).
LET_GO_WAIT_S = 30.0


@dataclass
class _Job:
    owner: str
    input_ids: list[int]
    max_new_tokens: int
    hints: ReplyHints
    events: queue.Queue[Any]
    submitted: float
    started: threading.Event
    cancelled: threading.Event = field(default_factory=threading.Event)  # nobody waits for the reply
    # The asker pressed Stop: the reply ends at its next token and what it wrote so far is its text.
    stop: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)  # the worker has let it go


class _Run:
    """One job being written: its text goes to the waiting caller as it comes."""

    def __init__(self, job: _Job, lora_version: str | None) -> None:
        job.started.set()
        self.job = job
        self.version = None if job.hints.base_only else lora_version
        self.start = time.monotonic()
        self.first: float | None = None
        self.pieces: list[str] = []

    def on_text(self, text: str) -> None:
        if self.job.cancelled.is_set() or self.job.stop.is_set():
            raise ReplyStopped
        if text:
            if self.first is None:
                self.first = time.monotonic() - self.start
            self.pieces.append(text)
            self.job.events.put(Token(text))

    def finish(self, count: int) -> None:
        stats = ReplyStats(time.monotonic() - self.start, self.first, len(self.job.input_ids), count)
        text = clean_reply("".join(self.pieces))
        waited = self.start - self.job.submitted
        self.job.events.put(Generated(text, self.version, stats, waited, stopped=self.job.stop.is_set()))
        self.job.ended.set()

    def fail(self, exc: BaseException) -> None:
        self.job.events.put(RuntimeError(f"generation failed: {exc}"))
        self.job.ended.set()


class GenerationService:
    """Runs an Engine on one worker thread; thread-safe for any number of callers. The engine
    decodes up to `slots` replies together; LoRA swaps and other exclusive actions run only while
    no reply is being written (new replies wait until the running ones end)."""

    def __init__(
        self, engine: Engine, sync_interval_s: float = 1.0, read_ahead_after_s: float = READ_AHEAD_AFTER_S
    ) -> None:
        self.engine = engine
        self._queue: FairQueue[_Job] = FairQueue()
        self._control: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._closing = threading.Event()
        self._busy = threading.Event()  # every slot is writing a reply
        self._sync_interval_s = sync_interval_s
        self._next_sync = 0.0
        self._running: dict[object, _Run] = {}  # the replies in progress, by the engine's handle
        self._group: object = None
        # The likely start of a conversation's next prompt, read while nothing else is to be done
        # (the latest asked only: one conversation's start is worth more than a backlog of them).
        self._ahead_lock = threading.Lock()
        self._ahead: tuple[list[int], ReplyHints, Future[int]] | None = None
        self._read_ahead_after_s = read_ahead_after_s
        self._busy_at = 0.0  # when the engine last had a reply to write or waiting
        self._worker = threading.Thread(target=self._run, name="generation", daemon=True)
        metrics.watch_queue(self.queued)
        metrics.serving(engine.loras.version)
        self._worker.start()

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    @property
    def serving_lora(self) -> tuple[str, Path] | None:
        """(version, directory) of the LoRA the engine serves now; None: the base model."""
        return self.engine.loras.serving

    def queued(self) -> int:
        return len(self._queue)

    def stream(
        self,
        owner: str,
        input_ids: list[int],
        max_new_tokens: int,
        hints: ReplyHints = NO_HINTS,
        group: str = "",
        stop: threading.Event | None = None,
    ) -> Iterator[Queued | Token | Generated]:
        """Queued(position) while waiting, Token(delta) as text comes, then Generated. The queue takes
        turns by `group` (the asker's workspace), then by `owner` (the asker).

        Setting `stop` (the asker pressed Stop) ends the reply early, and still with Generated
        (`stopped`): at its next token with the text written so far, or at once, empty, if it waits.

        Closing it before Generated (the asker's stream was dropped or stopped) cancels the reply: taken
        out of the queue if it waits, ended at its next token if it is being written. The close returns
        once the worker has let the reply go, so a slot held for it is not freed before then.
        """
        job = _Job(owner, input_ids, max_new_tokens, hints, queue.Queue(), time.monotonic(), threading.Event())
        if stop is not None:
            job.stop = stop
        self._queue.put(owner, job, group)
        generated = False
        try:
            last_position = 0
            while not job.started.is_set():
                if job.stop.is_set() and self._queue.remove(job):
                    job.ended.set()
                    metrics.REPLIES_CANCELLED.labels("stopped").inc()
                    generated = True
                    stats = ReplyStats(0.0, None, len(input_ids), 0)
                    yield Generated("", None, stats, time.monotonic() - job.submitted, stopped=True)
                    return
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
                generated = isinstance(event, Generated)  # written in full: nothing left to cancel
                if generated and event.stopped:
                    metrics.REPLIES_CANCELLED.labels("stopped").inc()
                yield event
                if generated:
                    return
        finally:
            if not generated and not job.ended.is_set():
                self._cancel(job)

    def _cancel(self, job: _Job) -> None:
        job.cancelled.set()
        if self._queue.remove(job):
            job.ended.set()
            metrics.REPLIES_CANCELLED.labels("waiting").inc()
            return
        metrics.REPLIES_CANCELLED.labels("writing").inc()
        if not job.ended.wait(LET_GO_WAIT_S):
            log.warning("a dropped reply was not let go within %.0f s", LET_GO_WAIT_S)

    def read_ahead(self, input_ids: list[int], hints: ReplyHints = NO_HINTS) -> Future[int]:
        """Have the engine read `input_ids` (the start a conversation's next prompt will likely have)
        once it has nothing else to do, so that the next reply reads only what is new. The future
        gives the tokens held: 0 if a later call took its place or the engine keeps no prompts."""
        future: Future[int] = Future()
        with self._ahead_lock:
            replaced, self._ahead = self._ahead, (list(input_ids), hints, future)
        if replaced is not None:
            replaced[2].set_result(0)
        return future

    def run_exclusive(self, action: Callable[[], T]) -> Future[T]:
        """Run `action` on the worker while no reply is being written (LoRA loads and swaps)."""
        future: Future[T] = Future()
        self._control.put((action, future))
        return future

    def request_sync(self) -> Future[None]:
        return self.run_exclusive(self._sync_lora)

    def _sync_lora(self) -> None:
        before = self.engine.loras.version
        self.engine.loras.sync()
        if self.engine.loras.version != before:
            metrics.serving(self.engine.loras.version)
            if (swap_s := self.engine.loras.last_swap_s) is not None:
                metrics.SWAP_SECONDS.observe(swap_s)

    def close(self) -> None:
        self._closing.set()
        self._worker.join(timeout=10)

    def _run(self) -> None:
        while not self._closing.is_set():
            if not self._running:  # between replies: the only time the weights may change
                self._run_control()
                if time.monotonic() >= self._next_sync:
                    # Watching the registry lets another process (a trainer, an admin CLI) swap us.
                    self._safely(self._sync_lora)
                    self._next_sync = time.monotonic() + self._sync_interval_s
            if self._running or len(self._queue):
                self._busy_at = time.monotonic()
            elif self._control.empty() and time.monotonic() - self._busy_at >= self._read_ahead_after_s:
                self._read_ahead()
            self._admit()
            if self._running:
                self._step()
        if self._running:  # closed mid-reply: nothing left behind in the engine
            self.engine.abort()
            self._fail_running(RuntimeError("the generation service was closed"))

    def _read_ahead(self) -> None:
        with self._ahead_lock:
            ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        input_ids, hints, future = ahead

        def someone_waits() -> bool:
            return bool(len(self._queue)) or not self._control.empty() or self._closing.is_set()

        try:
            future.set_result(self.engine.hold(input_ids, hints, someone_waits))
        except Exception as exc:  # a cache not read ahead costs time only: the next reply reads it all
            log.exception("reading a conversation's start ahead failed")
            future.set_exception(exc)

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
        except LoraUnavailable:
            pass  # said once, when it failed (bot/generation/lora_follow.py)
        except Exception:
            log.exception("LoRA sync failed; the current LoRA keeps serving")

    def _draining(self) -> bool:
        """New replies wait while an exclusive action or a due LoRA swap waits for the running ones.
        The registry is read once a sync interval, not at every step: a batch's step takes milliseconds."""
        if not self._control.empty():
            return True
        if time.monotonic() < self._next_sync:
            return False
        if self._safe_swap_pending():
            return True  # the swap runs (and the next look is set) once the running replies end
        self._next_sync = time.monotonic() + self._sync_interval_s
        return False

    def _safe_swap_pending(self) -> bool:
        try:
            return self.engine.loras.swap_pending()
        except Exception:
            log.exception("cannot read the registry; the current LoRA keeps serving")
            return False

    def _admit(self) -> None:
        """Waiting replies into free slots, in the fair queue's order; a reply that needs another LoRA
        than the batch's waits for the batch to end."""
        engine = self.engine
        while len(self._running) < engine.slots and not self._draining():
            job = self._queue.take(
                lambda j: not self._running or engine.group(j.hints) == self._group,
                timeout=0 if self._running else 0.05,
            )
            if job is None:
                break
            if job.cancelled.is_set():  # dropped between leaving the queue and now
                job.ended.set()
                continue
            run = _Run(job, engine.loras.version)
            try:
                handle = engine.start(job.input_ids, job.max_new_tokens, run.on_text, job.hints)
            except Exception as exc:  # a prompt the engine refuses fails that reply only
                log.exception("generation failed")
                run.fail(exc)
                continue
            self._group = engine.group(job.hints)
            self._running[handle] = run
        self._show_busy()

    def _step(self) -> None:
        """One decoding step for every reply in progress (with one slot: the whole reply)."""
        try:
            for handle, count in self.engine.step():
                self._running.pop(handle).finish(count)
        except BaseException as exc:
            log.exception("generation failed")
            self.engine.abort()
            self._fail_running(exc)
        self._busy_at = time.monotonic()  # busy until now: a one-slot step is a whole reply
        self._show_busy()

    def _show_busy(self) -> None:
        """Waiting callers count a reply being written ahead of them while every slot is taken."""
        if len(self._running) >= self.engine.slots:
            self._busy.set()
        else:
            self._busy.clear()

    def _fail_running(self, exc: BaseException) -> None:
        for run in self._running.values():
            run.fail(exc)
        self._running.clear()
