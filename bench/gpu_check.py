"""The GPU check: the bot's real generation path on bitsandbytes 4-bit NF4, step by step, timed.

    python bench/gpu_check.py [--tiny [--kit DIR]] [--device auto|cuda|cpu] [--max-new-tokens N]
    python bench/gpu_check.py --export-kit DIR     # config + tokenizer of the default model, to carry

On the transformers engine (`BOT_ENGINE=transformers`): (1) load the model in 4-bit; (2) answer one
question through the bot's Core (retrieval, prompt, the generation worker), or through the worker
and build_prompt directly where the feedback store cannot be built (no SQLAlchemy); (3) train
QLoRA steps on a few rows (bot/finetune/qlora.py's train_lora where TRL is installed, else the same
LoraConfig, rows and loss stepped with peft); (4) swap that LoRA into the serving engine through
its LoraFollower and answer with it; (5) roll back to the base model and check that the greedy
reply has exactly the token ids of the reply before the swap. Prints one `name  value` line a
figure, then `GPU CHECK OK` (exit 0) or `GPU CHECK FAILED ...` (exit 1).

`--tiny` builds a random-weight model in the default model's architecture with its real tokenizer
(the model cannot travel to a GPU machine; `--kit` points at `--export-kit`'s files there). On a
CPU `--tiny` runs the same steps (tests/test_gpu_check.py); without bitsandbytes it falls back to
float32 there and says so. docs/deploy.md ("The GPU check") says how to run it on a GPU machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: a GPU machine reaches no hub

from bench import gpu_check_parts as parts  # noqa: E402

LORA_VERSION = "gpu-check"


class CheckFailed(RuntimeError):
    pass


def emit(name: str, value: object) -> None:
    if isinstance(value, float):
        value = f"{value:.4g}"
    print(f"{name}  {value}", flush=True)


@contextmanager
def step(name: str) -> Iterator[None]:
    """A failing step ends the check with its name; the traceback goes to stderr."""
    try:
        yield
    except CheckFailed:
        raise
    except Exception as exc:
        traceback.print_exc()
        raise CheckFailed(f"at step {name}: {type(exc).__name__}: {exc}") from exc


def peak_gpu_mb(cuda: bool) -> str | float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if cuda else "n/a (CPU)"


def reset_peak(cuda: bool) -> None:
    import torch

    if cuda:
        torch.cuda.reset_peak_memory_stats()


# Preflight: say what is missing before anything fails on it ----------------------------------------------


def preflight(device: str) -> tuple[str, list[str]]:
    """The device to run on and the notes that end a GPU run as incomplete."""
    missing = [m for m in parts.BOT_NEEDS if not parts.installed(m)]
    if missing or not parts.installed("torch"):
        names = ", ".join(missing or ["torch"])
        raise CheckFailed(f"at preflight: the bot's own dependencies are missing: {names}; carry their wheels "
                          "(docs/deploy.md, 'The GPU check')")  # fmt: skip
    import torch

    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise CheckFailed("at preflight: --device cuda, but torch sees no CUDA device")
    device = device if device != "auto" else ("cuda" if cuda else "cpu")
    emit("device", f"cuda ({torch.cuda.get_device_name(0)})" if device == "cuda" else "cpu")
    for name in ("torch", "transformers", "peft", "bitsandbytes", "trl", "chromadb", "sqlalchemy"):
        emit(name, parts.version_of(name, "SQLAlchemy" if name == "sqlalchemy" else None) or "MISSING")
    notes = []
    if not parts.installed("bitsandbytes"):
        print("bitsandbytes is MISSING: the 4-bit NF4 path cannot run; carry its wheel (docs/deploy.md)", flush=True)
        if device == "cuda":
            notes.append("bitsandbytes is missing, so the steps ran unquantized (bfloat16), not on 4-bit NF4")
    return device, notes


# The model ------------------------------------------------------------------------------------------


def model_settings(args: argparse.Namespace, work: Path, device: str, quantize: str) -> Any:
    """The bot's settings for this check: the transformers engine on `device`, greedy replies."""
    from bot.config import DEFAULT_MODEL, load_settings
    from bot.generation.model_files import model_cache_dir, prepare_model

    common = {"engine": "transformers", "tuning__device": device, "tuning__quantize": quantize,
              "tuning__temperature": 0.0, "max_new_tokens": args.max_new_tokens, "log_level": "WARNING",
              "data_dir": str(work / "data")}  # fmt: skip
    # The bot's own model cache, not one in the scratch data directory (a minute's conversion a run).
    common["model_cache"] = str(args.model_cache or model_cache_dir(load_settings()))
    settings = load_settings(**common)  # BOT_MODEL, BOT_MODEL_CACHE, ... from the environment
    if not args.tiny:
        return settings
    # Else the default model's converted files (converted once from its GGUF where that is missing).
    source = args.kit or Path(prepare_model(settings.model_copy(update={"model": DEFAULT_MODEL})).path)
    tiny = work / "tiny-model"
    emit("model", parts.build_tiny_model(source, tiny))
    # A local directory is a `model` the settings accept (model_files.prepare_model); the 4-bit copy
    # goes into a cache of its own, so that no tiny model lands in the real model cache.
    return settings.model_copy(update={"model": str(tiny), "model_cache": work / "models"})


def load_engine(settings: Any, lora_source: Any = None) -> Any:
    from bot.generation.hf_engine import HFEngine
    from bot.generation.model_files import prepare_model

    return HFEngine(settings, prepare_model(settings), lora_source=lora_source)


def load_serving_engine(args: argparse.Namespace, work: Path, device: str, lora: Callable[[], Any]) -> tuple[Any, Any]:
    """(settings, engine) in 4-bit; on a CPU, float32 where bitsandbytes cannot run the tiny model."""
    cuda = device == "cuda"
    quantize = "4bit" if parts.installed("bitsandbytes") else "none"
    settings = model_settings(args, work, device, quantize)
    if not args.tiny:
        emit("model", settings.model)
    reset_peak(cuda)
    try:
        engine = load_engine(settings, lora)
    except Exception as exc:
        if cuda or quantize == "none":
            raise
        print(f"4-bit on this CPU failed ({type(exc).__name__}: {exc}): float32 instead", flush=True)
        settings = settings.model_copy(update={"tuning": settings.tuning.model_copy(update={"quantize": "none"})})
        engine = load_engine(settings, lora)
    compute = "bfloat16" if cuda else "float32"
    emit("quantization", f"nf4 (bitsandbytes 4-bit, {compute} compute)" if settings.tuning.quantize == "4bit" else
         f"none: {compute} weights (bitsandbytes {'missing' if quantize == 'none' else 'failed'})")  # fmt: skip
    emit("load_s", engine.load_seconds)
    emit("model_memory_mb", engine.memory_bytes / 2**20)
    emit("load_peak_gpu_mb", peak_gpu_mb(cuda))
    return settings, engine


# Steps --------------------------------------------------------------------------------------------


def emit_reply(prefix: str, answered: parts.Answered) -> None:
    emit(f"{prefix}_prompt_tokens", answered.prompt_tokens)
    emit(f"{prefix}_examples_in_prompt", answered.examples_in_prompt)
    emit(f"{prefix}_first_token_s", answered.first_token_s if answered.first_token_s is not None else "n/a")
    emit(f"{prefix}_tokens", len(answered.ids))
    emit(f"{prefix}_decode_tokens_per_s", answered.decode_tokens_per_s or "n/a (under 2 tokens)")
    emit(f"{prefix}_lora_version", answered.lora_version or "none (base model)")


# The check ------------------------------------------------------------------------------------------


def run_check(args: argparse.Namespace, work: Path) -> list[str]:
    """The five steps; returns notes that make the run incomplete (empty: all of it ran as meant)."""
    with step("preflight"):
        device, notes = preflight(args.device)
    cuda = device == "cuda"
    lora: list[Any] = [None]  # what the serving engine's LoRA source says: (version, directory) or None
    with step("1 load"):
        settings, engine = load_serving_engine(args, work, device, lambda: lora[0])
    answerer: parts.Answerer | None = None
    try:
        with step("2 reply through the core"):
            answerer = parts.Answerer(settings, engine, work, args.tiny)
            emit("reply_path", answerer.path)
            answerer.ask()  # warm-up (CUDA kernels, the CPU weight repack): not the figures
            reset_peak(cuda)
            before = answerer.ask()
            emit_reply("reply", before)
            emit("reply_peak_gpu_mb", peak_gpu_mb(cuda))
            if before.examples_in_prompt == 0:
                raise RuntimeError("no example was retrieved: the LoRA would not write the reply (lora_for)")
        with step("3 QLoRA training"):
            adapter = train(args, settings, work, cuda)
        with step("4 live LoRA swap"):
            lora[0] = (LORA_VERSION, adapter)
            emit("swap_s", answerer.sync())
            with_lora = answerer.ask()
            emit_reply("lora_reply", with_lora)
            if with_lora.lora_version != LORA_VERSION:
                raise RuntimeError(f"the reply was written by {with_lora.lora_version}, not LoRA {LORA_VERSION}")
            emit("lora_first_logits_max_change", parts.logit_change(with_lora, before))
            differs = "yes" if with_lora.ids != before.ids else "no (a few steps move it little)"
            emit("lora_reply_differs_from_base", differs)
        with step("5 rollback"):
            lora[0] = None
            emit("rollback_s", answerer.sync())
            after = answerer.ask()
            emit_reply("rollback_reply", after)
            if after.lora_version is not None or engine.loras.version is not None:
                raise RuntimeError(f"still serving {engine.loras.version} after the rollback")
            emit("rollback_first_logits_max_change", parts.logit_change(after, before))
            if after.ids != before.ids:
                pairs = zip(after.ids, before.ids, strict=False)
                first_diff = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(after.ids), len(before.ids)))
                raise RuntimeError(f"the greedy reply after the rollback differs from the one before the swap at "
                                   f"token {first_diff} ({len(after.ids)} vs {len(before.ids)} tokens)")  # fmt: skip
            emit("rollback_token_exact", f"yes ({len(after.ids)} tokens identical to the reply before the swap)")
    finally:
        if answerer is not None:
            answerer.close()
    return notes


def train(args: argparse.Namespace, settings: Any, work: Path, cuda: bool) -> Path:
    """QLoRA steps in a model of their own, as the trainer process loads one: the serving engine's
    weights stay untouched (peft and kbit preparation change a model in place)."""
    import gc

    can_trl = parts.installed("trl") and parts.installed("datasets")
    use_trl = args.trainer == "trl" or (args.trainer == "auto" and can_trl)
    rows = parts.training_rows(settings, args.train_rows)
    out = work / "lora"
    started = time.monotonic()
    engine = load_engine(settings)  # its 4-bit copy is cached by now: the trainer's warm load
    emit("train_load_s", time.monotonic() - started)
    engine.restore_4bit_layout()  # as the pipeline does before training
    reset_peak(cuda)
    trainer = parts.train_with_trl if use_trl else parts.train_with_peft
    trained = trainer(settings, engine, rows, args.train_steps, out)
    emit("train_path", trained.path)
    emit("train_rows", len(rows))
    emit("train_steps", len(trained.losses))
    emit("train_total_s", trained.total_s)
    if trained.step_s:  # the first step pays for warm-up (CUDA kernels, allocator): the others are the figure
        emit("train_first_step_s", trained.step_s[0])
        later = trained.step_s[1:]
        emit("train_step_s", sum(later) / len(later) if later else "n/a (one step)")
    emit("train_loss_first", trained.losses[0])
    emit("train_loss_last", trained.losses[-1])
    emit("train_peak_gpu_mb", peak_gpu_mb(cuda))
    del engine, trained
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()
    if not (out / "adapter_config.json").is_file():
        raise RuntimeError(f"no LoRA was saved in {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random-weight model with the real tokenizer")
    parser.add_argument("--kit", type=Path, help="--tiny: the default model's config and tokenizer (--export-kit)")
    parser.add_argument("--export-kit", type=Path, metavar="DIR", help="write that kit into DIR and exit")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--model-cache", type=Path, help="the converted default model's cache (setting model_cache)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--train-rows", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--trainer", choices=["auto", "trl", "peft"], default="auto",
                        help="auto: the trainer's own TRL path where TRL is installed, else the peft step")  # fmt: skip
    args = parser.parse_args(argv)
    if args.export_kit:
        from bot.config import load_settings
        from bot.generation.model_files import prepare_model

        settings = load_settings(**({"model_cache": str(args.model_cache)} if args.model_cache else {}))
        print(f"wrote {', '.join(parts.export_kit(Path(prepare_model(settings).path), args.export_kit))} "
              f"to {args.export_kit}")  # fmt: skip
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        try:
            notes = run_check(args, Path(work))
        except CheckFailed as exc:
            print(f"GPU CHECK FAILED {exc}", flush=True)
            return 1
    emit("check_total_s", time.monotonic() - started)
    if notes:
        print(f"GPU CHECK FAILED: {'; '.join(notes)}", flush=True)
        return 1
    print("GPU CHECK OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
