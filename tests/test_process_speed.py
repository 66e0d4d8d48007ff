"""The bot's own process decodes at the speed of its engine alone (issue 35).

torch's OpenMP threads (the embedder's) took the cores from llama.cpp's while it decoded: `bot ask`
ran at half the engine's speed. Under OMP_WAIT_POLICY=active every OpenMP thread that ever ran spins
for good, the worst case of that fight, so a process where torch still has a pool shows it at once
(0.33x here before the fix) and one where it does not matches its engine (1.0x). Speed itself is the
benchmarks' (bench/cpu_speed.py); this is a ratio within one run, with a wide margin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MODEL_CACHE, REPO, require_llama_cpp

pytestmark = pytest.mark.slow
TOKENS = 96
SPIN = {"OMP_WAIT_POLICY": "active", "BOT_ENGINE": "llama.cpp", "BOT_MODEL_CACHE": str(MODEL_CACHE)}


def test_bot_ask_decodes_near_the_speed_of_its_engine_alone(tmp_path: Path) -> None:
    require_llama_cpp()
    env = {**os.environ, **SPIN, "BOT_DATA_DIR": str(tmp_path / "data"), "BOT_MAX_NEW_TOKENS": str(TOKENS)}
    question = "Write a long story about a dragon who learns to cook, in many chapters."
    asked = subprocess.run([sys.executable, "-m", "bot", "ask", "--json", question], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert asked.returncode == 0, asked.stderr[-2000:]
    reply = json.loads(asked.stdout)
    assert reply["engine"].startswith("llama.cpp") and reply["completion_tokens"] >= TOKENS // 2
    whole = (reply["completion_tokens"] - 1) / (reply["latency_s"] - reply["first_token_s"])

    # The engine alone: the benchmark's path (worker, queue, decoding rules), no embedder at work.
    alone = subprocess.run([sys.executable, "bench/cpu_speed.py", "--engine-here", "llama.cpp", "--tokens",
                            str(TOKENS), "--runs", "1"], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-2000:]
    engine = json.loads(next(line for line in alone.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert whole >= 0.6 * engine["decode"], f"bot ask {whole:.1f} tokens/s, its engine alone {engine['decode']:.1f}"
