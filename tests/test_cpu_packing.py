"""LoRA loads, swaps and rollbacks give exactly the answers of a fresh process, on every CPU.

On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights on the first forward, and a peft load
after that used to corrupt the base model (bot/generation/cpu_packing.py says how). The first test runs the
real path wherever it is; the second forces the repacking on any CPU and checks the weights.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bot.generation.cpu_packing import pack_now, packed_layers
from bot.types import ConversationKey, Message, Reply
from tests.conftest import commit_lora
from tests.conftest import test_settings as settings_for

pytestmark = pytest.mark.slow
QUESTION = "What is the capital of France?"


def _greedy(engine, question: str = QUESTION, tokens: int = 24) -> str:
    ids = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    pieces: list[str] = []
    engine.generate(list(ids), tokens, pieces.append)
    return "".join(pieces)


def _has_avx512_bf16() -> bool:
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


def test_base_lora_rollback_base_returns_the_same_answers_token_for_token(
    make_real_core, random_loras, real_files, tmp_path: Path
) -> None:
    from bot.generation.hf_engine import HFEngine

    core = make_real_core(max_new_tokens=24, tuning__retrieval_k=0, tuning__history_turns=0, tuning__lora_for="all")
    engine = core.generation.engine
    version = commit_lora(core.registry, random_loras[0])

    def ask() -> Reply:
        return core.answer(Message(ConversationKey("t", uuid.uuid4().hex), "u", QUESTION))

    base = ask()
    if _has_avx512_bf16():  # the path that used to corrupt the model is really taken here
        assert packed_layers(engine.model) > 0
    core.command("console", "local", f"lora use {version}", ConversationKey("t", "a"))
    with_lora = ask()
    core.command("console", "local", "lora rollback", ConversationKey("t", "a"))
    base_again = ask()
    core.command("console", "local", f"lora use {version}", ConversationKey("t", "a"))
    with_lora_again = ask()

    assert with_lora.lora_version == version and base_again.lora_version is None
    assert base_again.text == base.text
    assert with_lora.text != base.text and with_lora_again.text == with_lora.text

    # A fresh model that loads the LoRA before its first forward, as a new process would.
    fresh = HFEngine(settings_for(tmp_path / "fresh"), real_files, lambda: (version, Path(random_loras[0])))
    fresh.loras.sync()
    assert _greedy(fresh) == _greedy_in(core, version)


def _greedy_in(core, version: str) -> str:
    """The same greedy continuation of QUESTION as `_greedy`, from the core's live engine."""
    engine = core.generation.engine
    return core.generation.run_exclusive(lambda: _greedy(engine)).result(timeout=120)


def test_forced_repacking_survives_lora_load_swap_and_unload_on_any_cpu(
    real_files, random_loras, tmp_path: Path
) -> None:
    """Repack as bitsandbytes' first CPU forward does, then let peft load, swap and unload LoRAs:
    every 4-bit layer must still dequantize to exactly its original weights."""
    import torch
    from bitsandbytes.functional import dequantize_4bit
    from bitsandbytes.nn import Linear4bit

    from bot.generation.hf_engine import HFEngine

    wanted: list[tuple[str, Path] | None] = [None]
    engine = HFEngine(settings_for(tmp_path, tuning__keep_loaded=2), real_files, lambda: wanted[0])
    layers = [m for m in engine.model.modules() if isinstance(m, Linear4bit)]
    original = [dequantize_4bit(m.weight.data, m.weight.quant_state).clone() for m in layers]

    def assert_original_weights() -> None:
        assert packed_layers(engine.model) == 0
        for layer, weights in zip(layers, original, strict=True):
            assert torch.equal(dequantize_4bit(layer.weight.data, layer.weight.quant_state), weights)

    loras = [("v1", random_loras[0]), ("v2", random_loras[1]), ("v3", random_loras[0])]
    for lora in loras:  # v3 makes the engine unload v1 (keep_loaded=2)
        assert pack_now(engine.model) == len(layers)  # what the first forward after a swap does
        wanted[0] = lora
        engine.loras.sync()
        assert_original_weights()
    assert engine.loras.loaded() == ["v2", "v3"]
    pack_now(engine.model)
    wanted[0] = None  # rollback to the base model touches no weights: they stay packed, consistently
    engine.loras.sync()
    assert packed_layers(engine.model) == len(layers)


def test_the_training_gate_compares_base_and_candidate_on_uncorrupted_weights(
    real_files, random_loras, tmp_path: Path
) -> None:
    from bot.finetune.gate import serving_answerer
    from bot.stores.examples import ExampleStore
    from tests.fakes import FakeEmbedder

    # Every reply generated (no kept base replies) and written by the candidate (no examples here).
    settings = settings_for(
        tmp_path, max_new_tokens=24, tuning__retrieval_k=0, tuning__lora_for="all", engine="transformers"
    )
    examples = ExampleStore(FakeEmbedder(), tmp_path / "chroma")
    with serving_answerer(settings, real_files, examples, None) as (answer, use):
        base = answer("1", QUESTION)  # each in a conversation of its own
        use(("candidate", Path(random_loras[0])))
        candidate = answer("2", QUESTION)
        use(None)
        assert answer("3", QUESTION) == base
        use(("candidate", Path(random_loras[0])))
        assert answer("4", QUESTION) == candidate != base


@pytest.mark.parametrize("path", ["plain", "repacked"])
def test_each_cpu_path_swaps_exactly(path: str, real_files, random_loras, tmp_path: Path) -> None:
    """The same round trip on bitsandbytes' plain 4-bit path, which CPUs without AVX512-BF16 (and any
    CPU with the repacking turned off) take, and on the repacked one where this CPU has it."""
    from bitsandbytes.nn import Linear4bit

    from bot.generation.hf_engine import HFEngine

    if path == "repacked" and not _has_avx512_bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes has no repacked kernel here")
    wanted: list[tuple[str, Path] | None] = [None]
    engine = HFEngine(settings_for(tmp_path), real_files, lambda: wanted[0])
    for layer in engine.model.modules():
        if isinstance(layer, Linear4bit):
            layer.support_avx512bf16_for_cpu = path == "repacked"

    base = _greedy(engine)
    assert (packed_layers(engine.model) > 0) == (path == "repacked")
    wanted[0] = ("v1", Path(random_loras[0]))
    engine.loras.sync()
    with_lora = _greedy(engine)
    wanted[0] = None
    engine.loras.sync()
    assert _greedy(engine) == base != with_lora
    assert (packed_layers(engine.model) > 0) == (path == "repacked")
