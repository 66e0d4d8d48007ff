"""Decode speed and answers across a LoRA round trip: base, LoRA, rollback to base, on this CPU.

    .venv/bin/python bench/lora_swap.py [--tokens 96] [--runs 3] [--engine llama.cpp]

On a CPU with AVX512-BF16, bitsandbytes repacks the 4-bit weights for a faster kernel on the
first forward; loading a LoRA after that used to corrupt the base model (bot/generation/cpu_packing.py). This
prints decode tokens/s for the base model before any LoRA, with a LoRA, and after the rollback,
whether the rollback's greedy answer equals the first one, the swap times, and whether the weights
are in the repacked (fast) format while decoding (transformers only). With `--engine llama.cpp`
the load includes converting the LoRA to GGUF (once per adapter).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.config import load_settings  # noqa: E402
from bot.generation.cpu_packing import packed_layers  # noqa: E402
from bot.generation.hf_engine import HFEngine  # noqa: E402
from bot.generation.model_files import prepare_model  # noqa: E402

QUESTION = "Explain in a few sentences how a bicycle works."


def make_lora(model_path: Path, out: Path) -> Path:
    """A small LoRA with non-zero weights, saved as training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out)
    return out


def decode(engine: Any, tokens: int, runs: int) -> tuple[float, str]:
    ids = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    best, text = 0.0, ""
    for _ in range(runs):
        pieces: list[str] = []
        started = time.monotonic()
        count = engine.generate(list(ids), tokens, pieces.append)
        best = max(best, count / (time.monotonic() - started))
        text = "".join(pieces)
    return best, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model-cache", type=Path, default=REPO / ".cache" / "models")
    parser.add_argument("--engine", choices=["transformers", "llama.cpp"], default="transformers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as tmp:
        # No loop rules here: the same greedy tokens whatever they say, for a clean speed figure.
        settings = load_settings(
            env={},
            data_dir=tmp,
            model_cache=str(args.model_cache),
            tuning__no_repeat_ngram=0,
            tuning__repetition_penalty=1.0,
        )
        files = prepare_model(settings)
        lora = make_lora(files.path, Path(tmp) / "lora")
        wanted: list[tuple[str, Path] | None] = [None]
        if args.engine == "llama.cpp":
            from bot.generation.llama_engine import LlamaCppEngine

            engine: Any = LlamaCppEngine.for_default_model(settings, files, lambda: wanted[0])
        else:
            engine = HFEngine(settings, files, lambda: wanted[0])
        hf = args.engine == "transformers"
        results: dict[str, object] = {}
        results["base_tok_s"], first = decode(engine, args.tokens, args.runs)
        if hf:
            results["packed_layers"] = packed_layers(engine.model)
        wanted[0] = ("v1", lora)
        engine.loras.sync()
        results["load_swap_s"] = round(engine.loras.last_swap_s or 0, 3)
        results["lora_tok_s"], _ = decode(engine, args.tokens, args.runs)
        wanted[0] = None
        engine.loras.sync()
        results["rollback_s"] = round(engine.loras.last_swap_s or 0, 4)
        results["base_after_rollback_tok_s"], again = decode(engine, args.tokens, args.runs)
        results["same_answer_after_rollback"] = again == first
        wanted[0] = ("v1", lora)
        engine.loras.sync()
        results["swap_to_loaded_s"] = round(engine.loras.last_swap_s or 0, 4)
        if hf:
            results["packed_layers_after"] = packed_layers(engine.model)
    for key, value in results.items():
        print(f"{key:<28} {value:.4g}" if isinstance(value, float) else f"{key:<28} {value}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
