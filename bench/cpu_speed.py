"""CPU speed, side by side in one run: the bot's two CPU engines and plain llama.cpp on the same
model and the same prompt tokens (issue 12). Prints decode tokens/s, time to first token, warm
load, and aggregate tokens/s with 1 and 4 users at once, then the ratios to plain llama.cpp.

    .venv/bin/python bench/cpu_speed.py [--tokens 128] [--runs 3] [--only llama.cpp]

The bot's engines run through its whole generation path (the worker, the fair queue, the
decoding rules of the default settings, streaming text): `transformers` (bitsandbytes NF4) and
`llama.cpp` (its batching engine on the default model's GGUF). Plain llama.cpp is
llama-cpp-python's `Llama.generate` on the same GGUF (Q4_1), one user at a time: the reference.
llama-cpp-python comes with `make install EXTRAS=test,llama` (a 9-minute build on 2 cores).
Everything decodes greedily with end-of-text ignored, so every run writes exactly --tokens
tokens. Ratios, not absolutes, are comparable between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bot.config import load_settings
from bot.generation.hf_engine import HFEngine
from bot.generation.llama_engine import LlamaCppEngine, serving_gguf
from bot.generation.model_files import default_gguf_path, prepare_model
from bot.generation.worker import GenerationService
from bot.prompt import build_prompt

ENGINES = ("transformers", "llama.cpp")
RESULT = "RESULT "  # the line a child run's figures come back on
QUESTION = "How do I reset my Acme Cloud password? Explain every step in detail."

# One run: (prompt ids, tokens to write) -> (seconds to the first token, seconds in all, tokens written).
Run = Callable[[list[int], int], tuple[float, float, int]]


def line(name: str, value: str) -> None:
    print(f"{name:<46} {value}", flush=True)


def bot_path(settings, files, engine_name: str) -> tuple[float, Run, Callable[[], None], object]:
    started = time.monotonic()
    if engine_name == "transformers":
        import bitsandbytes  # noqa: F401  # the libraries' import is not the model's load
    else:
        import llama_cpp  # noqa: F401
    import transformers  # noqa: F401

    line(f"bot ({engine_name}): importing its libraries", f"{time.monotonic() - started:.2f} s")
    started = time.monotonic()
    if engine_name == "transformers":
        engine = HFEngine(settings, files)
        engine._stop_ids = [len(engine.tokenizer) + 1]  # no such token: every run writes all the tokens asked for
    else:
        engine = LlamaCppEngine.for_default_model(settings, files)
        engine._stop_ids = set()
    load_s = time.monotonic() - started
    service = GenerationService(engine)

    def run(ids: list[int], tokens: int) -> tuple[float, float, int]:
        started = time.monotonic()
        first, count = None, 0
        for event in service.stream(f"user-{threading.get_ident()}", ids, tokens):
            if first is None and getattr(event, "text", ""):
                first = time.monotonic() - started
            count = getattr(event, "completion_tokens", count)
        return first or 0.0, time.monotonic() - started, count

    def close() -> None:
        service.close()
        getattr(engine, "close", lambda: None)()

    return load_s, run, close, engine.tokenizer


def llama_path(gguf: Path, n_threads: int) -> tuple[float, Run, Callable[[], None]]:
    from llama_cpp import Llama

    from bot.generation.llama_engine import plain_llama_params

    started = time.monotonic()
    with plain_llama_params():  # the same weight buffers as the bot's engine
        llm = Llama(str(gguf), n_ctx=2048, n_threads=n_threads, verbose=False)
    load_s = time.monotonic() - started
    lock = threading.Lock()  # one context: users take turns, as they do on the bot's one worker

    def run(ids: list[int], tokens: int) -> tuple[float, float, int]:
        started = time.monotonic()  # before the wait for the context: a user waits too
        with lock:
            llm.reset()
            first, count = None, 0
            for _token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
                count += 1
                if first is None:
                    first = time.monotonic() - started
                if count == tokens:  # end-of-text is not a stop here: exactly `tokens` tokens
                    break
            return first or 0.0, time.monotonic() - started, count

    return load_s, run, lambda: None


def measure(name: str, load_s: float, run: Run, ids: list[int], tokens: int, runs: int) -> dict[str, float]:
    run(ids, 8)  # warm-up: first-call costs (kernel repacking, caches) are not decoding
    singles = [run(ids, tokens) for _ in range(runs)]
    first = statistics.median(s[0] for s in singles)
    decode = statistics.median((s[2] - 1) / (s[1] - s[0]) for s in singles)
    one_user = statistics.median(s[2] / s[1] for s in singles)
    results: list[tuple[float, float, int]] = []
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: results.append(run(ids, tokens))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    four_users = sum(r[2] for r in results) / (time.monotonic() - started)
    firsts = sorted(r[0] for r in results)
    line(f"{name}: warm load", f"{load_s:.2f} s")
    line(f"{name}: time to first token (median)", f"{first:.3f} s")
    line(f"{name}: decode tokens/s (median of {runs})", f"{decode:.1f}")
    line(f"{name}: aggregate tokens/s, 1 user / 4 users", f"{one_user:.1f} / {four_users:.1f}")
    line(f"{name}: 4 users' first tokens", ", ".join(f"{f:.2f}" for f in firsts) + " s")
    return {"load": load_s, "first": first, "decode": decode, "one": one_user, "four": four_users}


def prompt_ids(tokenizer, settings, tokens: int) -> list[int]:
    prompt = build_prompt(tokenizer, settings.system_prompt, [], [], QUESTION,
                          budget_tokens=settings.context_tokens - tokens)  # fmt: skip
    return prompt.input_ids


def run_engine(engine: str, settings, files, tokens: int, runs: int) -> dict[str, float]:
    """One of the bot's engines, measured in this process (the child's side of `main`)."""
    load_s, run, close, tokenizer = bot_path(settings, files, engine)
    ids = prompt_ids(tokenizer, settings, tokens)
    line(f"bot ({engine}): prompt tokens", str(len(ids)))
    try:
        return measure(f"bot ({engine})", load_s, run, ids, tokens, runs)
    finally:
        close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=ENGINES, action="append", help="the bot's engines to run (default: both)")
    parser.add_argument("--engine-here", choices=ENGINES, help=argparse.SUPPRESS)  # a child run of one engine
    args = parser.parse_args()
    settings = load_settings()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings.model_copy(update={"data_dir": Path(tmp), "log_level": "WARNING"})
        files = prepare_model(settings)
        if args.engine_here:
            print(RESULT + json.dumps(run_engine(args.engine_here, settings, files, args.tokens, args.runs)))
            return
        threads = os.cpu_count() or 1
        print(f"model {settings.model}, {threads} CPUs, {args.tokens} greedy tokens", flush=True)
        for engine in args.only or ENGINES:
            # Each engine in a process of its own, as it runs in the bot: one engine's libraries and
            # threads (torch's) measurably slow the other's when both live in one process.
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--engine-here",
                    engine,
                    "--tokens",
                    str(args.tokens),
                    "--runs",
                    str(args.runs),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            lines = child.stdout.splitlines()
            print("\n".join(text for text in lines if not text.startswith(RESULT)), flush=True)
            results[engine] = json.loads(next(text for text in lines if text.startswith(RESULT))[len(RESULT) :])
        from transformers import AutoTokenizer

        ids = prompt_ids(AutoTokenizer.from_pretrained(files.path), settings, args.tokens)
        line("prompt tokens (the same ids for all)", str(len(ids)))
        load_s, run, close = llama_path(default_gguf_path(), threads)
        llama = measure("plain llama.cpp (Q4_1 GGUF)", load_s, run, ids, args.tokens, args.runs)
        close()
        # The same on the file the bot's llama.cpp engine serves: what the bot's own layer costs.
        load_s, run, close = llama_path(serving_gguf(settings, default_gguf_path()), threads)
        same_file = measure("plain llama.cpp (F16, the bot's file)", load_s, run, ids, args.tokens, args.runs)
        close()
    line("bot (llama.cpp) / plain llama.cpp on its file: decode",
         f"{results['llama.cpp']['decode'] / same_file['decode']:.2f}x" if "llama.cpp" in results else "-")  # fmt: skip
    for engine, bot in results.items():
        line(f"bot ({engine}) / plain llama.cpp: decode", f"{bot['decode'] / llama['decode']:.2f}x (target >= 0.5x)")
        line(f"bot ({engine}): first token", f"{bot['first']:.3f} s (target <= 0.15 s)")
        line(f"bot ({engine}): 4 users / 1 user aggregate", f"{bot['four'] / bot['one']:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
