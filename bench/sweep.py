"""Examples-only accuracy (no LoRA) over a grid of settings, on every fact set, one loaded model.

    .venv/bin/python bench/sweep.py --grid tuning.answer_bias=0,2 --grid tuning.retrieval_k=1,3 [--regression]

Each fact set (bench/data/<name>_examples.jsonl + <name>_eval.jsonl) gets its own example store;
every combination of the --grid values answers every eval question of every set greedily through
the bot's own core. Prints a row per combination and one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import bench_core, use_settings, with_values  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.evaluation import core_answerer, evaluate_file  # noqa: E402
from bot.stores.examples import ExampleStore, parse_examples_file  # noqa: E402
from bot.training.dataset import REGRESSION_FILE  # noqa: E402

DATA = REPO / "bench" / "data"


def fact_sets(names: list[str] | None) -> list[str]:
    found = sorted(p.name.removesuffix("_examples.jsonl") for p in DATA.glob("*_examples.jsonl"))
    return [n for n in found if not names or n in names]


def parse_grid(items: list[str]) -> list[dict[str, Any]]:
    keys, choices = [], []
    for item in items:
        key, values = item.split("=", 1)
        keys.append(key)
        choices.append([_value(v) for v in values.split(",")])
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)] or [{}]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def accuracy(core: Core, eval_file: Path) -> float:
    return evaluate_file(core_answerer(core, "sweep"), eval_file).accuracy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="KEY: a dotted setting name")
    parser.add_argument("--sets", nargs="*", help="fact set names (default: every set in bench/data)")
    parser.add_argument("--regression", action="store_true", help="also score the regression set")
    parser.add_argument("--model-cache", type=Path, default=REPO / ".cache" / "models")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        base, core = bench_core(Path(tmp), args.model_cache)
        stores = {}
        for name in fact_sets(args.sets):
            store = ExampleStore(core.examples.embedder, Path(tmp) / f"chroma-{name}")
            store.upsert(parse_examples_file(DATA / f"{name}_examples.jsonl"), source="import")
            stores[name] = store
        for combo in parse_grid(args.grid):
            settings = with_values(base, combo)
            use_settings(core, settings)
            row: dict[str, Any] = {"settings": combo}
            started = time.monotonic()
            for name, store in stores.items():
                core.examples = store
                row[name] = round(accuracy(core, DATA / f"{name}_eval.jsonl"), 4)
            if args.regression:
                row["regression"] = round(accuracy(core, REGRESSION_FILE), 4)
            row["seconds"] = round(time.monotonic() - started)
            rows.append(row)
            scores = "  ".join(f"{k} {v:.1%}" for k, v in row.items() if isinstance(v, float))
            print(f"{json.dumps(combo)}  {scores}  ({row['seconds']} s)", flush=True)
        core.generation.close()
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
