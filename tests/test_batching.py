"""The generation service with a batching engine: replies decoded together, fairness, LoRA
groups and swaps only between replies (a fake engine here; llama.cpp in test_llama_engine.py). An
engine that writes one reply at a time is one with a single slot, served by the same loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bot.generation.engine import NO_HINTS, Generated, ReplyHints
from bot.generation.worker import GenerationService
from bot.types import Queued, Token
from tests.fakes import FakeBatchingEngine, FakeEngine


def collect(service: GenerationService, owner: str, hints: ReplyHints = NO_HINTS, out: list | None = None) -> list:
    events = out if out is not None else []
    for event in service.stream(owner, [1, 2, 3], 50, hints):
        events.append((time.monotonic(), event))
    return events


def run_together(service: GenerationService, owners: list[str], hints: list[ReplyHints] | None = None) -> list[list]:
    results: list[list] = [[] for _ in owners]
    threads = [
        threading.Thread(target=collect, args=(service, owner, (hints or [ReplyHints()] * len(owners))[i], results[i]))
        for i, owner in enumerate(owners)
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.01)  # a stable arrival order
    for thread in threads:
        thread.join(timeout=30)
    return results


def first_text_at(events: list) -> float:
    return next(at for at, event in events if isinstance(event, Token))


def ended_at(events: list) -> float:
    return next(at for at, event in events if isinstance(event, Generated))


def test_four_users_are_written_together_each_starting_while_the_others_decode() -> None:
    engine = FakeBatchingEngine(reply=" ".join(["word"] * 20), delay_s=0.01)
    service = GenerationService(engine)
    try:
        results = run_together(service, ["a", "b", "c", "d"])
    finally:
        service.close()
    assert all(isinstance(r[-1][1], Generated) and r[-1][1].text == " ".join(["word"] * 20) for r in results)
    assert max(first_text_at(r) for r in results) < min(ended_at(r) for r in results), "nobody waited for a reply"
    assert max(len(step) for step in engine.steps) == 4
    assert len(engine.steps) < 4 * 20, "decoded together, not one after another"


def test_past_the_slots_users_queue_fairly_and_see_their_position() -> None:
    gate = threading.Event()
    engine = FakeBatchingEngine(reply="one two three", slots=2, gate=gate, delay_s=0.02)
    service = GenerationService(engine)
    try:
        threading.Timer(0.3, gate.set).start()
        results = run_together(service, ["a", "a", "a", "b"])
    finally:
        service.close()
    # "a" asked three times: "b" takes the first free slot before a's third question.
    assert first_text_at(results[3]) < first_text_at(results[2])
    assert any(isinstance(e, Queued) for _, e in results[2])
    assert all(r[-1][1].text == "one two three" for r in results)


def test_a_base_model_reply_never_shares_a_batch_with_a_lora_reply(tmp_path: Path) -> None:
    engine = FakeBatchingEngine(reply="one two three four", delay_s=0.01, lora_source=lambda: ("v0001", tmp_path))
    service = GenerationService(engine)
    try:
        service.request_sync().result(timeout=10)
        hints = [ReplyHints(), ReplyHints(base_only=True), ReplyHints(), ReplyHints(base_only=True)]
        results = run_together(service, ["a", "b", "c", "d"], hints)
    finally:
        service.close()
    versions = [r[-1][1].lora_version for r in results]
    assert versions == ["v0001", None, "v0001", None]
    assert all(len({group for _, group in step}) == 1 for step in engine.steps)  # the fake asserts it too


@pytest.mark.parametrize("engine_type", [FakeBatchingEngine, FakeEngine])
def test_a_swap_waits_for_the_replies_being_written_and_drops_none(tmp_path: Path, engine_type: type) -> None:
    wanted: list[tuple[str, Path] | None] = [("v0001", tmp_path)]
    engine = engine_type(reply=" ".join(["w"] * 30), delay_s=0.01, lora_source=lambda: wanted[0])
    service = GenerationService(engine, sync_interval_s=0.05)
    try:
        service.request_sync().result(timeout=10)
        first: list = []
        writer = threading.Thread(target=collect, args=(service, "a", ReplyHints(), first))
        writer.start()
        while not any(isinstance(e, Token) for _, e in first):
            time.sleep(0.005)
        wanted[0] = ("v0002", tmp_path)  # promoted by another process mid-reply
        time.sleep(0.1)  # past the service's next look at the registry (every 0.05 s here)
        later = collect(service, "b")
        writer.join(timeout=30)
    finally:
        service.close()
    assert first[-1][1].lora_version == "v0001" and first[-1][1].text == " ".join(["w"] * 30)
    assert later[-1][1].lora_version == "v0002"
    assert first_text_at(later) > ended_at(first), "the new LoRA wrote nothing before the old one's reply ended"


def test_a_failed_step_fails_its_replies_clearly_and_the_next_ones_are_served() -> None:
    engine = FakeBatchingEngine(reply="one two three", fail_at_step=2)
    service = GenerationService(engine)
    try:
        with pytest.raises(RuntimeError, match="generation failed: the engine broke"):
            collect(service, "a")
        assert collect(service, "b")[-1][1].text == "one two three"
    finally:
        service.close()


def test_the_registry_is_read_once_a_sync_interval_not_at_every_step(tmp_path: Path) -> None:
    reads = []

    def source() -> tuple[str, Path]:
        reads.append(time.monotonic())
        return ("v0001", tmp_path)

    engine = FakeBatchingEngine(reply=" ".join(["w"] * 40), delay_s=0.01, lora_source=source)
    service = GenerationService(engine, sync_interval_s=0.1)
    try:
        service.request_sync().result(timeout=10)
        reads.clear()
        collect(service, "a")
    finally:
        service.close()
    assert len(engine.steps) == 40
    assert len(reads) <= len(engine.steps) // 4, f"{len(reads)} registry reads for {len(engine.steps)} steps"


def test_closing_mid_reply_leaves_nothing_in_the_engine() -> None:
    gate = threading.Event()
    engine = FakeBatchingEngine(reply="one two three", gate=gate)
    service = GenerationService(engine)
    events: list = []
    failed: list = []

    def ask() -> None:
        try:
            collect(service, "a", out=events)
        except RuntimeError as exc:
            failed.append(str(exc))

    asker = threading.Thread(target=ask)
    asker.start()
    while not engine.calls:
        time.sleep(0.005)
    threading.Timer(0.2, gate.set).start()
    service.close()
    asker.join(timeout=10)
    assert engine._begun == [] and failed and "closed" in failed[0]


def test_an_engine_that_writes_a_reply_in_one_call_is_a_batching_engine_with_one_slot() -> None:
    engine = FakeEngine(reply="one two three")
    pieces: list[str] = []
    handle = engine.start([1, 2], 50, pieces.append, NO_HINTS)
    assert engine.slots == 1 and pieces == [], "begun, written by the next step"
    assert engine.step() == [(handle, 3)] and "".join(pieces) == "one two three"
    assert engine.step() == [], "nothing begun, nothing written"
    engine.start([1, 2], 50, pieces.append, NO_HINTS)
    engine.abort()
    assert engine.step() == [] and engine.calls == [[1, 2]], "an aborted reply is never written"
