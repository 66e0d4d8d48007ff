"""A conversation's next prompt reads only what it does not share with the last one, and the reply
is the one a cold read gives: the rule (bot/generation/prompt_reuse.py) and the transformers engine on
the real default model. (The llama.cpp engine's own test: tests/test_llama_engine.py.)"""

from __future__ import annotations

import time

import pytest

from bot.generation.engine import NO_HINTS
from bot.generation.prompt_reuse import CHUNK, chunk_ends, reusable
from bot.prompt import build_prompt
from bot.types import Turn


def test_only_whole_chunks_of_the_common_start_are_reused_and_never_the_last_token() -> None:
    held = list(range(300))
    assert reusable(held, held[:200] + [-1] * 50) == 192  # 200 shared: down to 3 chunks
    assert reusable(held, [*held[:63], -1]) == 0
    assert reusable(held, held[:128]) == 64, "the last token is read for the first logits"
    assert reusable(held[:100], held) == 64, "nothing the held prompt did not read"
    assert reusable([], held) == 0


def test_chunks_end_at_aligned_positions_and_leave_the_last_piece_for_the_logits() -> None:
    assert chunk_ends(0, 130) == [64, 128]  # then 2 tokens with the logits
    assert chunk_ends(0, 128) == [64]  # then a whole chunk with the logits
    assert chunk_ends(64, 100) == []
    assert chunk_ends(0, 10, chunk=4) == [4, 8]


def conversation_prompts(tokenizer, system_prompt: str) -> tuple[list[int], list[int]]:
    """Two prompts of one conversation, the second one exchange later: a long common start."""
    turns = [Turn(f"Tell me fact number {n} about bicycles.", f"Fact {n}: bicycles have two wheels.") for n in range(8)]
    first = build_prompt(tokenizer, system_prompt, [], turns[:7], "And a fact about tyres?", 1536)
    second = build_prompt(tokenizer, system_prompt, [], turns, "What about the chain?", 1536)
    return first.input_ids, second.input_ids


@pytest.mark.slow
def test_the_transformers_engine_reuses_a_conversations_start_and_writes_the_same_reply(
    real_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = real_engine
    first, second = conversation_prompts(engine.tokenizer, engine.settings.system_prompt)
    shared = next(n for n, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert shared > 2 * CHUNK, "the test needs a long common start"
    kept: list[int] = []
    take = engine._take_cache

    def spy(group, prompt):
        cache, count = take(group, prompt)
        kept.append(count)
        return cache, count

    monkeypatch.setattr(engine, "_take_cache", spy)

    def reply(ids: list[int]) -> str:
        pieces: list[str] = []
        engine.generate(ids, 24, pieces.append)
        return "".join(pieces)

    engine._held = None  # cold
    reply(first)
    warm = reply(second)
    engine._held = None
    cold = reply(second)
    assert kept == [0, shared // CHUNK * CHUNK, 0], (kept, shared)
    assert warm == cold and warm.strip(), "a held start gives the reply a cold read gives"
    assert reply(second) == cold, "the same prompt again: all but its last piece held"
    assert kept[-1] == (len(second) - 1) // CHUNK * CHUNK


# Reading a conversation's next start ahead, while the user reads the reply ---------------------


def test_a_conversations_start_is_what_its_next_prompt_starts_with(real_files) -> None:
    from transformers import AutoTokenizer

    from bot.prompt import conversation_start
    from bot.types import Example

    tokenizer = AutoTokenizer.from_pretrained(real_files.path)
    history = [Turn("What are the hours?", "We open at 9.\nClosed <|im_end|> Sundays."), Turn("And Sundays?", "No.")]
    examples = [Example("a", "Where is it?", "Main street 4."), Example("b", "Wifi?", "The password is x.")]
    start = conversation_start(tokenizer, "Be brief.", history)
    assert start is not None
    ids = build_prompt(tokenizer, "Be brief.", examples, history, "Is parking free?", 1800).input_ids
    assert len(start) > 40 and ids[: len(start)] == start
    assert conversation_start(tokenizer, "Be brief.", []) is None


def test_after_a_reply_the_engine_reads_the_conversations_start_before_the_next_message(make_core) -> None:
    from bot.types import ConversationKey, Message
    from tests.fakes import FakeEngine

    engine = FakeEngine(reply="We open at nine.")
    core = make_core(engine)
    conversation = ConversationKey("console", "chat")
    core.answer(Message(conversation, "local", "What are the opening hours?"))
    deadline = time.monotonic() + 5
    while not engine.holds and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(engine.holds) == 1, "read ahead once the reply is written"
    core.answer(Message(conversation, "local", "And on Sundays?"))
    start, second = engine.holds[0], engine.calls[1]
    assert second[: len(start)] == start and len(second) > len(start)


def test_reading_ahead_gives_way_to_a_reply_and_only_the_latest_start_is_read() -> None:
    import threading

    from bot.generation.worker import GenerationService
    from tests.fakes import FakeEngine

    holding, stopped = threading.Event(), threading.Event()

    class ReadsUntilStopped(FakeEngine):
        def hold(self, input_ids, hints, stop) -> int:
            holding.set()
            for _ in range(500):  # 5 s at most
                if stop():
                    stopped.set()
                    return 64
                time.sleep(0.01)
            return 0

    engine = ReadsUntilStopped()
    service = GenerationService(engine)
    try:
        replaced = service.read_ahead([1, 2, 3])
        latest = service.read_ahead([4, 5, 6])
        assert replaced.result(timeout=1) == 0, "a later start took its place"
        assert holding.wait(5)
        started = time.monotonic()
        events = list(service.stream("someone", [7], 4))
        assert time.monotonic() - started < 2 and events[-1].stats.completion_tokens > 0
        assert stopped.is_set() and latest.result(timeout=1) == 64
    finally:
        service.close()


def _held_then_cold(engine, kept_by_take: list[int]) -> None:
    """hold(start), then a prompt that goes on from it keeps the start's whole chunks and is answered
    as a cold read answers it."""
    _, second = conversation_prompts(engine.tokenizer, engine.settings.system_prompt)
    start = second[: len(second) - 20]  # what the next prompt starts with
    assert engine.hold(start, NO_HINTS, lambda: True) == 0, "asked to stop at once: nothing read"
    read = engine.hold(start, NO_HINTS, lambda: False)
    assert read == len(start) // CHUNK * CHUNK and read > CHUNK
    pieces: list[str] = []
    engine.generate(second, 24, pieces.append)
    warm = "".join(pieces)
    assert kept_by_take[-1] == read, (kept_by_take, read)
    if hasattr(engine._held, "forget"):  # llama.cpp: its free slots
        engine._held.forget(None)
    else:
        engine._held = None
    pieces = []
    engine.generate(second, 24, pieces.append)
    assert kept_by_take[-1] == 0
    assert "".join(pieces) == warm and warm.strip(), "a start read ahead gives the reply a cold read gives"


@pytest.mark.slow
def test_the_transformers_engine_reads_a_start_ahead_and_writes_the_cold_reply(real_engine, monkeypatch) -> None:
    kept: list[int] = []
    take = real_engine._take_cache
    monkeypatch.setattr(real_engine, "_take_cache", lambda g, p: (r := take(g, p), kept.append(r[1]))[0])
    real_engine._held = None
    _held_then_cold(real_engine, kept)


@pytest.mark.slow
def test_the_llama_engine_reads_a_start_ahead_and_writes_the_cold_reply(real_llama_engine, monkeypatch) -> None:
    engine = real_llama_engine
    kept: list[int] = []
    take = engine._held.take
    monkeypatch.setattr(engine._held, "take", lambda g, p: (r := take(g, p), kept.append(r[1]))[0])
    engine._held.forget(None)
    _held_then_cold(engine, kept)


def test_questions_asked_one_after_another_are_not_slowed_by_reading_ahead(make_core) -> None:
    """`bot eval` and the gate send the next question at once: nothing is read ahead between them,
    only once the engine has been idle for a while."""
    from bot.types import ConversationKey, Message
    from tests.fakes import FakeEngine

    engine = FakeEngine(reply="We open at nine.")
    core = make_core(engine)
    core.generation._read_ahead_after_s = 3.0  # far longer than the gap between two questions, even on a busy CI
    for n in range(5):
        core.answer(Message(ConversationKey("console", f"eval-{n}"), "local", "What are the opening hours?"))
    assert engine.holds == [], "read ahead between questions sent one after another"
    core.generation._read_ahead_after_s = 0.0
    deadline = time.monotonic() + 5
    while not engine.holds and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(engine.holds) == 1, "the latest conversation's start, once idle"


def test_the_idle_time_before_reading_ahead_counts_from_the_end_of_a_long_reply(make_core) -> None:
    """An engine that writes a reply in one call does it in one long step: the worker was busy all
    that time, so the next question, sent at once, still comes before any reading ahead."""
    from bot.types import ConversationKey, Message
    from tests.fakes import FakeEngine

    engine = FakeEngine(reply="We open at nine.", delay_s=0.3)  # 1.2 s a reply
    core = make_core(engine)
    core.generation._read_ahead_after_s = 0.8  # shorter than a reply, far longer than the gap between two questions
    for n in range(2):
        core.answer(Message(ConversationKey("console", f"eval-{n}"), "local", "What are the opening hours?"))
    assert engine.holds == [], "read ahead between questions sent one after another"
