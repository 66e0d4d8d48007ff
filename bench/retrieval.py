"""Retrieval on paraphrases: is the right example first, and is it among what the prompt gets?

    .venv/bin/python bench/retrieval.py [--examples FILE --eval FILE] [--k 3] [--show-misses]

For each fact set (default: every bench/data/*_examples.jsonl with its *_eval.jsonl), a fresh
chromadb store in a temporary directory with the real embedder, the examples imported as
`bot examples import` does, then `ExampleStore.retrieve` for each eval question (every scope, as the
eval and the gate see them) at k = the settings default and a sweep of similarity floors. Reports
recall@1 (the eval row's `source` example first), recall@k (in the returned list: what the prompt
gets) and how many questions got nothing, for two ways to embed an example: question and answer
together (what bot/stores/examples.py does) and the question alone (patched in here, for the run only).
Prints a table per set and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bot.stores.examples  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.embedder import Embedder, SentenceEmbedder  # noqa: E402
from bot.evaluation import load_eval_file  # noqa: E402
from bot.stores.examples import DEDUP_SIMILARITY, ExampleStore, parse_examples_file  # noqa: E402
from bot.types import ALL_SCOPES  # noqa: E402

DATA = REPO / "bench" / "data"
FLOORS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
# How an example becomes the text that is embedded: name -> document_text(input, output).
MODES: dict[str, Callable[[str, str], str]] = {
    "question+answer": bot.stores.examples.document_text,
    "question only": lambda input_text, output_text: input_text,
}


class CachedEmbedder:
    """The real embedder, remembering texts: each question is embedded once for the whole sweep."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, self.inner.embed(missing), strict=True))
        return np.stack([self._cache[t] for t in texts])


@contextmanager
def embedding_mode(name: str) -> Iterator[None]:
    with mock.patch.object(bot.stores.examples, "document_text", MODES[name]):
        yield


def read_sources(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    missing = [i for i, row in enumerate(rows, 1) if not isinstance(row.get("source"), str)]
    if missing:
        raise SystemExit(f'{path}: lines {missing} have no "source" (the example\'s input) to score against')
    return [row["source"] for row in rows]


def measure(
    embedder: Embedder, examples: Path, eval_path: Path, mode: str, k: int, dedup: float, floors: Sequence[float]
) -> dict[str, Any]:
    items = load_eval_file(eval_path)
    sources = read_sources(eval_path)
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp, embedding_mode(mode):
        store = ExampleStore(embedder, path=Path(tmp) / "chroma")
        store.upsert(parse_examples_file(examples), source="import")
        rows: dict[str, Any] = {}
        for floor in floors:
            first = in_k = none = 0
            misses: list[dict[str, Any]] = []
            for item, source in zip(items, sources, strict=True):
                got = store.retrieve(item.question, k, floor, dedup, scope=ALL_SCOPES)
                inputs = [e.input for e in got]
                first += bool(inputs) and inputs[0] == source
                in_k += source in inputs
                none += not got
                if source not in inputs:
                    misses.append({"question": item.question, "source": source, "got": inputs[:1]})
            rows[str(floor)] = {"recall@1": first, f"recall@{k}": in_k, "none": none, "misses": misses}
            print(f"  {mode}: floor {floor} done", file=sys.stderr, flush=True)
    return {"total": len(items), "floors": rows}


def print_table(name: str, total: int, k: int, results: dict[str, dict[str, Any]]) -> None:
    modes = list(results)
    print(f"\n{name}: {total} questions, k={k}  (recall@1 / recall@{k} / nothing retrieved)")
    print(f"{'floor':>6} | " + " | ".join(f"{m:^22}" for m in modes))
    for floor in next(iter(results.values()))["floors"]:
        cells = []
        for mode in modes:
            row = results[mode]["floors"][floor]
            cells.append(f"{row['recall@1']:>3} / {row[f'recall@{k}']:>3} / {row['none']:>3}".center(22))
        print(f"{floor:>6} | " + " | ".join(cells))


def default_sets() -> list[tuple[str, Path, Path]]:
    sets = []
    for examples in sorted(DATA.glob("*_examples.jsonl")):
        name = examples.name.removesuffix("_examples.jsonl")
        sets.append((name, examples, DATA / f"{name}_eval.jsonl"))
    return sets


def main() -> int:
    defaults = Settings().tuning
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=Path, help="an examples file (with --eval); default: every set in bench/data"
    )
    parser.add_argument("--eval", type=Path, help='its eval file, rows with a "source" naming an example input')
    parser.add_argument("--k", type=int, default=defaults.retrieval_k, help="default: tuning.retrieval_k")
    parser.add_argument("--floors", type=float, nargs="+", default=list(FLOORS), help="tuning.min_similarity values")
    parser.add_argument("--show-misses", action="store_true", help="list the questions whose example was not in k")
    args = parser.parse_args()
    if (args.examples is None) != (args.eval is None):
        parser.error("--examples and --eval go together")
    sets = [(args.examples.stem, args.examples, args.eval)] if args.examples else default_sets()

    started = time.monotonic()
    print("loading the embedder...", file=sys.stderr, flush=True)
    embedder = CachedEmbedder(SentenceEmbedder(Settings().embedder))
    summary: dict[str, Any] = {"k": args.k, "dedup_similarity": DEDUP_SIMILARITY, "sets": {}}
    for name, examples, eval_path in sets:
        print(f"{name}: {examples.name} + {eval_path.name}", file=sys.stderr, flush=True)
        results = {
            mode: measure(embedder, examples, eval_path, mode, args.k, DEDUP_SIMILARITY, args.floors) for mode in MODES
        }
        total = next(iter(results.values()))["total"]
        print_table(name, total, args.k, results)
        if args.show_misses:
            floor = str(defaults.min_similarity)
            for mode, result in results.items():
                for miss in result["floors"].get(floor, {}).get("misses", []):
                    print(f"  miss ({mode}, floor {floor}): {miss['question']!r} -> {miss['got']}")
        summary["sets"][name] = {
            "total": total,
            **{
                mode: {f: {key: v for key, v in row.items() if key != "misses"} for f, row in r["floors"].items()}
                for mode, r in results.items()
            },
        }
    print(f"\ndefault min_similarity {defaults.min_similarity}; {time.monotonic() - started:.0f} s", flush=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
