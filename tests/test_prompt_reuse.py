"""A conversation's next prompt reads only what it does not share with the last one, and the reply
is the one a cold read gives: the rule (bot/generation/prompt_reuse.py) and the transformers engine on
the real default model. (The llama.cpp engine's own test: tests/test_llama_engine.py.)"""

from __future__ import annotations

import pytest

from bot.generation.prompt_reuse import CHUNK, chunk_ends, reusable
from bot.prompt import Turn, build_prompt


def test_only_whole_chunks_of_the_common_start_are_reused_and_never_the_last_token() -> None:
    held = list(range(300))
    assert reusable(held, held[:200] + [-1] * 50) == 192  # 200 shared: down to 3 chunks
    assert reusable(held, held[:63] + [-1]) == 0
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
