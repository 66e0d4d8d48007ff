"""Serving benchmark: prints load times, time to first token, tokens/s, reply latency, retrieval
latency at 10k and 100k examples, and peak memory, for the configured (default) model.

    .venv/bin/python bench/serving.py [--runs 10] [--sizes 10000,100000] [--skip-cold]

Retrieval stores are filled with synthetic unit vectors (embedding 100k real texts would take
longer than the measurement); each query still goes through the real embedder and chromadb.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bot.config import load_settings
from bot.embedder import SentenceEmbedder
from bot.generation.hf_engine import HFEngine
from bot.generation.model_files import prepare_model
from bot.stores.examples import ExampleStore
from bot.types import ConversationKey, Done, Message, Token
from bot.wiring import assemble_core

QUESTION = "How do I reset my password?"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def line(name: str, value: str) -> None:
    print(f"{name:<44} {value}", flush=True)


def bench_load(tmp: Path, skip_cold: bool) -> None:
    if not skip_cold:
        cold = load_settings(env={}, data_dir=str(tmp / "cold"), model_cache=str(tmp / "cold-cache"))
        started = time.monotonic()
        files = prepare_model(cold)
        converted = time.monotonic() - started
        started = time.monotonic()
        HFEngine(cold, files)
        line("model load, cold (convert GGUF + 4-bit load)", f"{converted + time.monotonic() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--skip-cold", action="store_true", help="skip the one-time GGUF conversion")
    args = parser.parse_args()
    settings = load_settings()
    print(f"model {settings.model} ({settings.tuning.quantize}), {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bench_load(tmp, args.skip_cold)
        settings = settings.model_copy(update={"data_dir": tmp / "data"})
        started = time.monotonic()
        files = prepare_model(settings)
        engine = HFEngine(settings, files)
        line("model load, warm (cached safetensors, 4-bit)", f"{time.monotonic() - started:.1f} s")
        line("model memory footprint", f"{engine.memory_bytes / 1e6:.0f} MB")
        embedder = SentenceEmbedder(settings.embedder)
        examples = ExampleStore(embedder, tmp / "data" / "chroma")
        examples.add(QUESTION, "Open Settings > Security and click 'Send reset link'.", "good", "bench")
        core = assemble_core(settings, engine, examples)  # feedback in <data>/feedback.sqlite3
        core.answer(Message(ConversationKey("bench", "warmup"), "u", "Hi"))  # first call pays one-off costs

        latencies, first_tokens, rates = [], [], []
        for run in range(args.runs):
            conversation = ConversationKey("bench", str(run))  # no history: every run is the same work
            started = time.monotonic()
            first: float | None = None
            for event in core.answer_stream(Message(conversation, "u", QUESTION)):
                if isinstance(event, Token) and first is None:
                    first = time.monotonic() - started
                if isinstance(event, Done):
                    reply = event.reply
            total = time.monotonic() - started
            latencies.append(total)
            first_tokens.append(first or total)
            gen_time = total - (first or 0)
            if reply.stats.completion_tokens > 1 and gen_time > 0:
                rates.append((reply.stats.completion_tokens - 1) / gen_time)
        line("time to first token p50 / p95", f"{pct(first_tokens, 50):.2f} s / {pct(first_tokens, 95):.2f} s")
        line("decode speed (tokens/s) median", f"{statistics.median(rates):.1f}")
        line(
            f"reply latency p50 / p95 ({args.runs} runs, ~{reply.stats.completion_tokens} tokens)",
            f"{pct(latencies, 50):.2f} s / {pct(latencies, 95):.2f} s",
        )
        core.generation.close()

        import chromadb
        from chromadb.config import Settings as ChromaSettings

        rng = np.random.default_rng(0)
        for size in [int(s) for s in args.sizes.split(",") if s]:
            client = chromadb.PersistentClient(
                path=str(tmp / f"chroma-{size}"), settings=ChromaSettings(anonymized_telemetry=False)
            )
            store = ExampleStore(embedder, client=client)
            collection = store._collection
            dims = embedder.embed(["probe"]).shape[1]
            started = time.monotonic()
            for start in range(0, size, 5000):
                count = min(5000, size - start)
                vectors = rng.normal(size=(count, dims)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                collection.add(
                    ids=[f"x{start + i}" for i in range(count)],
                    embeddings=vectors.tolist(),
                    metadatas=[{"input": f"q{start + i}", "output": "a", "label": "good"} for i in range(count)],
                )
            fill = time.monotonic() - started
            timings = []
            for i in range(30):
                started = time.monotonic()
                store.retrieve(f"{QUESTION} {i}", settings.tuning.retrieval_k, -1.0)
                timings.append(time.monotonic() - started)
            line(f"retrieval at {size:,} examples p50 / p95", f"{pct(timings, 50) * 1000:.1f} ms / "
                 f"{pct(timings, 95) * 1000:.1f} ms (fill {fill:.0f} s)")  # fmt: skip
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line("process peak memory (RSS)", f"{peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
