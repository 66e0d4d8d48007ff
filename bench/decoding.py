"""Decoding defaults against greedy loops: how often replies run to the token limit, and what the
rules cost on the learning-loop figures (examples-only accuracy and the regression set).

    .venv/bin/python bench/decoding.py [--configs 0,1.0 6,1.0 4,1.0 6,1.1] [--examples FILE --eval FILE]

Each config is `no_repeat_ngram,repetition_penalty`. One model, one data directory with the example
file imported; every config answers the same questions greedily. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import bench_core, use_settings, with_values  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.evaluation import core_answerer, evaluate_file  # noqa: E402
from bot.stores.examples import parse_examples_file  # noqa: E402
from bot.training.dataset import REGRESSION_FILE  # noqa: E402
from bot.types import ALL_SCOPES, ConversationKey, Message, Reply  # noqa: E402

DATA = REPO / "bench" / "data"
# Open questions where the 135M model, greedy, tends to loop until the token limit.
OPEN_PROMPTS = [
    "Hi! What can you help me with?",
    "Tell me about Python.",
    "Write a haiku about the sea.",
    "Explain how a computer works.",
    "What should I do this weekend?",
    "Describe your favourite book.",
    "How do I reset my password?",
    "Write a Python function that adds two numbers.",
    "What are the benefits of exercise?",
    "Tell me a story about a cat.",
]


def ask(core: Core, question: str) -> Reply:
    conversation = ConversationKey("bench", "decoding")
    core.reset(conversation)
    return core.answer(Message(conversation, "bench", question, scope=ALL_SCOPES))


def measure(core: Core, eval_file: Path) -> dict[str, float]:
    limit = core.settings.max_new_tokens
    started = time.monotonic()
    replies = [ask(core, q) for q in OPEN_PROMPTS]
    open_s = time.monotonic() - started
    examples_only = evaluate_file(core_answerer(core, "decoding"), eval_file)
    regression = evaluate_file(core_answerer(core, "decoding"), REGRESSION_FILE)
    return {
        "hit_limit": sum(r.stats.completion_tokens >= limit for r in replies),
        "open_prompts": len(replies),
        "mean_tokens": round(statistics.mean(r.stats.completion_tokens for r in replies), 1),
        "open_s": round(open_s, 1),
        "examples_only": round(examples_only.accuracy, 4),
        "regression_hits": regression.hits,
        "regression_total": regression.total,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["0,1.0", "6,1.0", "4,1.0", "3,1.0", "4,1.05", "6,1.1"])
    parser.add_argument("--examples", type=Path, default=DATA / "acme_examples.jsonl")
    parser.add_argument("--eval", type=Path, default=DATA / "acme_eval.jsonl")
    parser.add_argument("--model-cache", type=Path, default=REPO / ".cache" / "models")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-decoding-") as tmp:
        base, core = bench_core(Path(tmp), args.model_cache)
        core.examples.upsert(parse_examples_file(args.examples), source="import")
        for config in args.configs:
            ngram, penalty = config.split(",")
            settings = with_values(
                base, {"tuning.no_repeat_ngram": int(ngram), "tuning.repetition_penalty": float(penalty)}
            )
            use_settings(core, settings)
            row = {"no_repeat_ngram": int(ngram), "repetition_penalty": float(penalty), **measure(core, args.eval)}
            results.append(row)
            print(
                f"ngram {row['no_repeat_ngram']:>2}  penalty {row['repetition_penalty']:.2f}  "
                f"open prompts at the limit {row['hit_limit']}/{row['open_prompts']} "
                f"(mean {row['mean_tokens']} tokens, {row['open_s']} s)  "
                f"examples-only {row['examples_only']:.1%}  "
                f"regression {row['regression_hits']}/{row['regression_total']}",
                flush=True,
            )
        core.generation.close()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
