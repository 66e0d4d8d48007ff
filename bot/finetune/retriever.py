"""The retriever's part of a retrain: a query adapter (bot/query_adapter.py) learnt on the training
split's examples and kept only if the held-out examples find their answer first at least as often
with it as without. A kept adapter goes into the candidate's directory before the gate, so the gate
answers with the retrieval users would get."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.query_adapter import Labelled, askable, fit_query_adapter, top1_hits
from bot.stores.examples import document_text
from bot.training.dataset import Pair, TrainingData
from bot.training.trust import text_key

log = logging.getLogger(__name__)
# Every question is scored against every example (a softmax over the store): 2,000 x 20,000 floats
# is 160 MB. A larger store keeps its embedder alone until this step samples.
MAX_EXAMPLES, MAX_QUESTIONS = 20_000, 2_000


def _overlap(a: str, b: str) -> float:
    words_a, words_b = set(a.split()), set(b.split())
    return len(words_a & words_b) / max(1, min(len(words_a), len(words_b)))


def answer_groups(pairs: Sequence[Pair], examples: Any, store: Any) -> list[str]:
    """Which examples answer alike, one label per pair. Examples with the same answer text do; so
    does an upvoted reply's example with the example it was answered from: a 👍 stores the reply's
    own words, which rarely match the verified answer letter for letter, but the vote says the
    reply said what that example says (the retrieved example nearest the reply in words, if they
    share at least half). Without this, every upvoted phrasing counted as another answer."""
    parent: dict[str, str] = {}

    def root(label: str) -> str:
        while parent.get(label, label) != label:
            label = parent[label]
        return label

    labels = [text_key(p.answer) for p in pairs]
    stored = {e.id: e for e in examples.get([p.ref for p in pairs if p.source == "vote"])} if store else {}
    for pair, label in zip(pairs, labels, strict=True):
        example = stored.get(pair.ref)
        exchange = store.exchange(example.exchange_id) if example is not None and example.exchange_id else None
        if exchange is None:
            continue
        sources = [text_key(e.output) for e in examples.get(list(exchange.example_ids))]
        best = max(sources, key=lambda answer: _overlap(answer, label), default=None)
        if best is not None and best != label and _overlap(best, label) >= 0.5:
            parent[root(label)] = root(best)
    return [root(label) for label in labels]


def train_retriever(data: TrainingData, examples: Any, store: Any, staging_dir: Path) -> dict[str, Any]:
    """Fit, judge and (if it helps) save the adapter; returns the manifest's `retriever` entry.

    The questions it learns from and is judged on are the run's own: the training split's examples
    and the held-out ones, as trust chose them (bot/training/trust.py). What they are retrieved
    from is every good example in the store, as serving retrieves."""
    started = time.monotonic()
    stored = [Pair(e.input, e.output, e.source or "import", e.id) for e in examples.list(label="good")]
    if len(stored) > MAX_EXAMPLES:
        return {"kept": False, "reason": f"{len(stored)} examples: more than this step handles ({MAX_EXAMPLES})"}
    row = {pair.ref: n for n, pair in enumerate(stored)}
    train_rows = [row[p.ref] for p in data.examples if p.ref in row]
    heldout_rows = [row[p.ref] for p in data.heldout if p.ref in row]
    if not train_rows or not heldout_rows:
        return {"kept": False, "reason": "no examples on one side of the split"}
    embedder = examples.embedder
    labelled = Labelled(
        documents=embedder.embed([document_text(p.question, p.answer) for p in stored]),
        questions=embedder.embed([p.question for p in stored]),
        answers=answer_groups(stored, examples, store),
    )
    train = askable(labelled, train_rows)[:MAX_QUESTIONS]
    heldout = askable(labelled, heldout_rows)
    entry: dict[str, Any] = {"trained_on": len(train), "heldout": len(heldout), "examples": len(stored)}
    if not train or not heldout:
        # One phrasing per answer says nothing about how people phrase it: feedback brings more.
        return {**entry, "kept": False, "reason": "no answer has two phrasings on both sides of the split"}
    adapter = fit_query_adapter(labelled, train)
    before, after = top1_hits(labelled, heldout, None), top1_hits(labelled, heldout, adapter)
    kept = after >= before
    if kept:
        adapter.save(staging_dir)
    reason = f"held-out questions with their answer first: {before} -> {after} of {len(heldout)}"
    log.info("query adapter %s: %s", "kept" if kept else "dropped", reason)
    return {**entry, "top1_before": before, "top1_after": after, "kept": kept, "reason": reason,
            "seconds": round(time.monotonic() - started, 2)}  # fmt: skip
