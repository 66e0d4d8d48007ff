"""The retriever's part of a retrain: a query adapter (bot/query_adapter.py) learnt on the training
split's examples and kept only if the held-out examples find their answer first at least as often
with it as without. A kept adapter goes into the candidate's directory before the gate, so the gate
answers with the retrieval users would get."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from bot.query_adapter import Labelled, askable, fit_query_adapter, top1_hits
from bot.stores.examples import document_text
from bot.training.dataset import TrainingData

log = logging.getLogger(__name__)


def train_retriever(data: TrainingData, embedder: Any, staging_dir: Path) -> dict[str, Any]:
    """Fit, judge and (if it helps) save the adapter; returns the manifest's `retriever` entry."""
    started = time.monotonic()
    pairs = [*data.examples, *data.heldout]
    if not pairs:
        return {"kept": False, "reason": "no examples"}
    labelled = Labelled(
        documents=embedder.embed([document_text(p.question, p.answer) for p in pairs]),
        questions=embedder.embed([p.question for p in pairs]),
        answers=[" ".join(p.answer.lower().split()) for p in pairs],
    )
    train = askable(labelled, range(len(data.examples)))
    heldout = askable(labelled, range(len(data.examples), len(pairs)))
    entry: dict[str, Any] = {"trained_on": len(train), "heldout": len(heldout)}
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
