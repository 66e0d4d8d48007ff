"""The llama.cpp engine on the real default model: LoRAs converted faithfully, the bot's decoding
rules applied, replies decoded together. (The swap, rollback and learning-loop tests run on it too:
test_lora_swap.py, test_learning_loop.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from bot.generation import lora_gguf
from bot.generation.engine import Generated, ReplyHints
from bot.generation.llama_cpu import plain_llama_params
from bot.generation.worker import GenerationService
from bot.prompt import build_prompt
from bot.types import Token
from tests.conftest import REPO, require_llama_cpp
from tests.conftest import test_settings as settings_for

pytestmark = pytest.mark.slow
QUESTIONS = ("What is the capital of France?", "Name three colours.", "Say hello.", "What is two plus two?")


def prompt_ids(engine, question: str) -> list[int]:
    settings = engine.settings
    return build_prompt(engine.tokenizer, settings.system_prompt, [], [], question, budget_tokens=1024).input_ids


def last_logits_llama(gguf: Path, ids: list[int], lora: Path | None) -> np.ndarray:
    from llama_cpp import Llama

    with plain_llama_params():
        llm = Llama(str(gguf), n_ctx=512, lora_path=str(lora) if lora else None, logits_all=True, verbose=False)
    llm.eval(ids)
    return np.array(llm.scores[len(ids) - 1], dtype=np.float64)


def test_a_peft_lora_as_gguf_moves_llama_cpp_as_it_moves_transformers(real_files, random_loras, tmp_path) -> None:
    """The conversion is right when the LoRA changes llama.cpp's logits the way it changes peft's
    (the bases differ a little: Q8_0 there, float32 here). Without the rotary row order for the
    query projection it would not."""
    require_llama_cpp()
    import json

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bot.generation.llama_engine import serving_gguf
    from bot.generation.model_files import default_gguf_path

    settings = settings_for(tmp_path)
    gguf = serving_gguf(settings, default_gguf_path())
    tokenizer = AutoTokenizer.from_pretrained(real_files.path)
    ids = build_prompt(tokenizer, settings.system_prompt, [], [], QUESTIONS[0], budget_tokens=512).input_ids
    base = AutoModelForCausalLM.from_pretrained(real_files.path, dtype=torch.float32)
    with torch.inference_mode():
        before = base(torch.tensor([ids])).logits[0, -1].double().numpy()
        tuned = PeftModel.from_pretrained(base, str(random_loras[0]))
        after = tuned(torch.tensor([ids])).logits[0, -1].double().numpy()
    config = json.loads((Path(real_files.path) / "config.json").read_text())
    llama_base = last_logits_llama(gguf, ids, None)

    def agreement(converted: Path) -> float:
        moved = last_logits_llama(gguf, ids, converted) - llama_base
        return float(np.corrcoef(moved, after - before)[0, 1])

    right = agreement(lora_gguf.gguf_lora_path(random_loras[0], tmp_path / "right", config))
    plain_rows = tmp_path / "wrong.gguf"
    original = lora_gguf.rotary_rows
    lora_gguf.rotary_rows = lambda weight, heads: weight  # type: ignore[assignment]
    try:
        lora_gguf.write_gguf_lora(random_loras[0], plain_rows, config)
    finally:
        lora_gguf.rotary_rows = original
    wrong = agreement(plain_rows)
    assert right > 0.95, right
    assert wrong < right - 0.1, (wrong, right)


def test_an_unsupported_adapter_is_refused_with_the_reason(random_loras, tmp_path) -> None:
    adapter = tmp_path / "dora"
    adapter.mkdir()
    for file in random_loras[0].iterdir():
        (adapter / file.name).write_bytes(file.read_bytes())
    config = (adapter / "adapter_config.json").read_text().replace('"use_dora": false', '"use_dora": true')
    (adapter / "adapter_config.json").write_text(config)
    model = {"model_type": "llama", "num_hidden_layers": 30, "num_attention_heads": 9}
    with pytest.raises(ValueError, match="plain LoRA only"):
        lora_gguf.write_gguf_lora(adapter, tmp_path / "x.gguf", model)


def ask_together(service: GenerationService, engine, questions: tuple[str, ...]) -> list[list]:
    """Every question at once, each from its own user: [(arrival time, event), ...] per question."""
    together: dict[int, list] = {}

    def ask(n: int) -> None:
        ids = prompt_ids(engine, questions[n])
        together[n] = [(time.monotonic(), event) for event in service.stream(f"u{n}", ids, 24)]

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(questions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return [together[n] for n in range(len(questions))]


@contextmanager
def first_step_logits(engine) -> Iterator[dict[tuple[int, ...], list[np.ndarray]]]:
    """The logits each reply's first token is chosen from, by prompt, in the order read."""
    seen: dict[tuple[int, ...], list[np.ndarray]] = {}
    start, choose = engine.start, engine._next

    def recording_start(input_ids, *args, **kwargs):
        sequence = start(input_ids, *args, **kwargs)
        sequence.prompt = tuple(input_ids)
        return sequence

    def recording_next(sequence, logits):
        if not sequence.reply:
            seen.setdefault(sequence.prompt, []).append(logits.copy())
        return choose(sequence, logits)

    engine.start, engine._next = recording_start, recording_next
    try:
        yield seen
    finally:
        del engine.start, engine._next


def test_replies_are_written_together_each_in_its_own_cache(real_llama_engine) -> None:
    engine = real_llama_engine
    engine.settings = settings_for(REPO / ".cache" / "unused", max_new_tokens=24)
    service = GenerationService(engine)
    try:
        with first_step_logits(engine) as logits:
            alone = [[(0.0, e) for e in service.stream("u", prompt_ids(engine, q), 24)] for q in QUESTIONS]
            mixed = ask_together(service, engine, QUESTIONS)
    finally:
        service.close()

    # Each prompt is read in a call of its own, so each reply starts from the logits it gets alone (bit
    # for bit on both CPUs measured; float noise allowed) and with the same token. Asked from 4 threads
    # at once, the prompts reach the engine as asked: without the tokenizer lock, 1 in 5 did not
    # (bot/generation/tokenizer_lock.py), and the reply started differently.
    for question in QUESTIONS:
        reads = logits[tuple(prompt_ids(engine, question))]
        assert len(reads) == 2, f"{question!r} reached the engine {len(reads)} time(s) as asked, not twice"
        by_itself, beside_others = reads
        moved = float(np.abs(beside_others - by_itself).max())
        assert moved < 1e-3 and np.argmax(beside_others) == np.argmax(by_itself), f"{question!r}: moved {moved}"
    # The rest is written in batches whose float sums may differ from one row's in a near tie
    # (docs/cpu_speed.md), so each reply must still be the one its question gets alone, at least at
    # its start (what the model says alone depends on its weights: "Name three colours." is not
    # answered with colours on F16, so the words are compared with its own reply, not a list).
    texts = [events[-1][1].text.lower().split() for events in mixed]
    by_itself = [events[-1][1].text.lower().split() for events in alone]
    assert all(text[:3] == own[:3] for text, own in zip(texts, by_itself, strict=True)), (texts, by_itself)
    first_texts = sorted(next(at for at, e in events if isinstance(e, Token)) for events in mixed)
    ends = [events[-1][0] for events in mixed]
    assert first_texts[-1] < max(ends) and first_texts[1] < min(ends), "later users started mid-reply"
    assert all(isinstance(events[-1][1], Generated) for events in [*alone, *mixed])


def test_the_answer_bias_steers_llama_cpp_like_transformers(real_llama_engine) -> None:
    engine = real_llama_engine
    engine.settings = settings_for(REPO / ".cache" / "unused", tuning__answer_bias=8.0)
    favored = tuple(engine.tokenizer(" Biscuit", add_special_tokens=False)["input_ids"])
    ids = prompt_ids(engine, "What is the name of the office cat?")
    plain, steered = [], []
    engine.generate(ids, 16, plain.append)
    engine.generate(ids, 16, steered.append, ReplyHints(favored=favored))
    assert "Biscuit" not in "".join(plain) and "Biscuit" in "".join(steered)


def test_converted_adapters_are_reused_and_old_ones_pruned(random_loras, tmp_path, monkeypatch) -> None:
    import json

    monkeypatch.setattr(lora_gguf, "KEEP_CONVERTED", 1)
    config = json.loads((Path(random_loras[0]) / "adapter_config.json").read_text())
    base = {"model_type": "llama", "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3}
    first = lora_gguf.gguf_lora_path(random_loras[0], tmp_path, base)
    assert config["r"] == 4 and lora_gguf.gguf_lora_path(random_loras[0], tmp_path, base) == first  # read back
    second = lora_gguf.gguf_lora_path(random_loras[1], tmp_path, base)
    assert second != first and list(tmp_path.glob("*.gguf")) == [second]


class _FakeParams:
    use_extra_bufts = True


@pytest.mark.parametrize(("system_info", "extra_buffers"), [(b"AVX512 = 1 | AMX_INT8 = 1 | ", False),
                                                            (b"AVX2 = 1 | AMX_INT8 = 0 | ", True)])  # fmt: skip
def test_a_build_with_amx_kernels_keeps_its_weights_out_of_amx_buffers(system_info: bytes, extra_buffers: bool):
    """A native build on an AMX CPU crashed with SIGILL in ggml's AMX matrix product on the first
    longer prompt on these machines' CPUs; every other build keeps llama.cpp's own choice."""
    from types import SimpleNamespace

    from bot.generation.llama_cpu import model_params_for_this_cpu

    fake = SimpleNamespace(llama_model_default_params=_FakeParams, llama_print_system_info=lambda: system_info)
    assert model_params_for_this_cpu(fake).use_extra_bufts is extra_buffers


def test_the_engine_reads_a_long_prompt_on_this_cpu(real_files, tmp_path) -> None:
    """On a CPU where llama.cpp's AMX path is compiled in, this died of SIGILL (the whole process)."""
    require_llama_cpp()
    from bot.generation.llama_engine import LlamaCppEngine

    engine = LlamaCppEngine.for_default_model(settings_for(tmp_path), real_files)
    try:
        ids = prompt_ids(engine, " ".join(["Tell me about the history of the bicycle."] * 12))
        pieces: list[str] = []
        assert engine.generate(ids, 8, pieces.append) == 8
        assert "".join(pieces).strip()
    finally:
        engine.close()


def test_a_conversations_next_prompt_reuses_the_start_it_shares_and_writes_the_same_reply(real_llama_engine) -> None:
    """The system prompt and earlier turns are not read again (bot/generation/llama_sequences.py),
    and the reply is token for token the one a cold read of the whole prompt gives."""
    from bot.generation.prompt_reuse import CHUNK
    from bot.types import Turn

    engine = real_llama_engine
    engine.settings = settings_for(REPO / ".cache" / "unused", max_new_tokens=24)
    turns = [Turn(f"Tell me fact number {n} about bicycles.", f"Fact {n}: bicycles have two wheels.") for n in range(8)]
    settings = engine.settings
    first = build_prompt(engine.tokenizer, settings.system_prompt, [], turns[:7], "And a fact about tyres?", 1536)
    second = build_prompt(engine.tokenizer, settings.system_prompt, [], turns, "What about the chain?", 1536)
    shared = next(n for n, (a, b) in enumerate(zip(first.input_ids, second.input_ids, strict=False)) if a != b)
    assert shared > 2 * CHUNK, "the test needs a long common start"

    def reply(ids: list[int]) -> tuple[int, list[int]]:
        tokens: list[int] = []
        handle = engine.start(ids, 24, lambda _text: None)
        kept = handle.position
        try:
            while not any(ended is handle for ended, _ in engine.step()):
                pass
            tokens = list(handle.reply)
        finally:
            engine.abort()
        return kept, tokens

    engine._held.forget(None)  # cold
    assert reply(first.input_ids)[0] == 0
    kept, warm = reply(second.input_ids)
    assert kept == shared // CHUNK * CHUNK, (kept, shared)
    engine._held.forget(None)
    assert reply(second.input_ids) == (0, warm), "a held start gives the reply a cold read gives"


def test_the_served_weights_are_a_setting(real_files, tmp_path) -> None:
    """`tuning.served_weights` (docs/cpu_speed.md weighs them): the shipped Q4_1 as it is, or a copy
    rewritten once in the model cache; each engine names the file it serves."""
    require_llama_cpp()
    from bot.generation.llama_engine import LlamaCppEngine, serving_gguf
    from bot.generation.model_files import default_gguf_path

    shipped = default_gguf_path()
    assert serving_gguf(settings_for(tmp_path, tuning__served_weights="q4_1"), shipped) == shipped
    q8 = serving_gguf(settings_for(tmp_path / "own-cache", tuning__served_weights="q8_0"), shipped)
    assert q8.name.endswith(".q8_0.gguf") and q8.is_file() and q8.stat().st_size < 2 * shipped.stat().st_size
    engine = LlamaCppEngine.for_default_model(settings_for(tmp_path, tuning__served_weights="q4_1"), real_files)
    try:
        assert shipped.name in engine.description
    finally:
        engine.close()


def test_a_dropped_reply_leaves_the_batch_at_its_next_token_and_the_others_go_on(real_llama_engine) -> None:
    service = GenerationService(real_llama_engine)
    try:
        kept_ids = prompt_ids(real_llama_engine, "Write a long story about a lighthouse keeper.")
        dropped = service.stream("u1", prompt_ids(real_llama_engine, "Tell me about the sea."), 200)
        kept = threading.Thread(target=lambda: results.extend(service.stream("u2", kept_ids, 24)))
        results: list = []
        kept.start()
        first = next(event for event in dropped if type(event).__name__ == "Token")
        assert first.text
        dropped.close()  # returns once the worker has let it go
        assert all(s.max_new_tokens != 200 for s in real_llama_engine._sequences), "it left the batch"
        kept.join(timeout=120)
        assert isinstance(results[-1], Generated) and results[-1].stats.completion_tokens == 24
        assert not real_llama_engine._sequences
    finally:
        service.close()
