"""The bot timed as users start it: `bot ask --json`, a whole process each time, for
bench/cpu_speed.py (issue 35)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def bot_ask(
    tokens: int, runs: int, prompt: str, data_dir: Path, question: str, examples: Path, line: Callable[[str, str], None]
) -> dict[str, float]:
    """The bot as users start it: `bot ask --json`, a process of its own each time (embedder, stores,
    engine, all of it), with the timings it prints (issue 35: inside the benchmark's bot path the
    engine decoded at twice the speed it reached in the product's process). `conversation`: the acme
    examples imported first, so a retrieved example is in the prompt, and each question is followed
    in its conversation by a second one, whose first token is the next reply's."""
    env = {**os.environ, "BOT_DATA_DIR": str(data_dir), "BOT_MAX_NEW_TOKENS": str(tokens), "BOT_ENGINE": "llama.cpp"}

    def ask(text: str, conversation: str) -> dict[str, float]:
        done = subprocess.run([sys.executable, "-m", "bot", "ask", "--json", "--conversation", conversation, text],
                              env=env, capture_output=True, text=True, check=True)  # fmt: skip
        return json.loads(done.stdout)

    if prompt == "conversation":
        subprocess.run([sys.executable, "-m", "bot", "examples", "import", str(examples)], env=env, check=True,
                       capture_output=True)  # fmt: skip
    started = time.monotonic()
    ask("Hello!", "warm-up")  # the first start writes the served GGUF and fills the OS's file cache
    warm_up_s = time.monotonic() - started
    replies, nexts = [], []
    for n in range(runs):
        replies.append(ask(question, f"run-{n}"))
        if prompt == "conversation":
            nexts.append(ask("And what if I no longer have my phone?", f"run-{n}")["first_token_s"])
    decode = statistics.median((r["completion_tokens"] - 1) / (r["latency_s"] - r["first_token_s"]) for r in replies)
    figures = {"first": statistics.median(r["first_token_s"] for r in replies), "decode": decode}
    line("bot ask: first process (GGUF written, caches cold)", f"{warm_up_s:.1f} s")
    line("bot ask: tokens written (median)", str(statistics.median(r["completion_tokens"] for r in replies)))
    line("bot ask: time to first token (median)", f"{figures['first']:.3f} s")
    line(f"bot ask: decode tokens/s (median of {runs})", f"{decode:.1f}")
    if nexts:
        figures["next_first"] = statistics.median(nexts)
        line("bot ask: next reply's first token (median)", f"{figures['next_first']:.3f} s")
    return figures
