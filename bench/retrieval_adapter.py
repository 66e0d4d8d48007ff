"""The retriever learning from feedback, on real phrasings (issue 31): does a query adapter learnt
from a week's feedback bring held-out phrasings to their answer first?

    .venv/bin/python bench/retrieval_adapter.py

On the CLINC150 subset (bench/data/clinc_*.jsonl): the examples are the taught phrasing of each
intent and the `use` phrasings a week brought (each upvoted or corrected to its intent's answer,
so each is an example of it), embedded as the store embeds them. The adapter learns on the `use`
phrasings (bot/query_adapter.py, as a retrain does); the held-out phrasings, never seen, are asked.
Also: the same with feedback on half the intents only (does it cost the others?), and how near the
out-of-scope queries come to any example (the similarity floor keeps them out). Embeddings only: no
model, about a minute.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.embedder import SentenceEmbedder  # noqa: E402
from bot.jsonl import read_jsonl  # noqa: E402
from bot.query_adapter import Labelled, askable, fit_query_adapter, top1_hits  # noqa: E402
from bot.stores.examples import document_text  # noqa: E402

DATA = REPO / "bench" / "data"


def load_subset() -> tuple[dict[str, str], dict[str, list[tuple[str, str]]], list[str]]:
    """(answer by intent, (intent, phrasing) rows by role, out-of-scope queries)."""
    answers = {row["intent"]: row["answer"] for row in read_jsonl(DATA / "clinc_answers.jsonl", dict)}
    roles: dict[str, list[tuple[str, str]]] = {}
    for row in read_jsonl(DATA / "clinc_phrasings.jsonl", dict):
        roles.setdefault(row["role"], []).append((row["intent"], row["question"]))
    return answers, roles, [row["question"] for row in read_jsonl(DATA / "clinc_oos.jsonl", dict)]


def labelled(
    embedder, answers: dict[str, str], examples: list[tuple[str, str]], heldout: list[tuple[str, str]]
) -> Labelled:
    """The examples as the store embeds them, then the held-out phrasings as questions only (their
    document rows are zero: they are not examples)."""
    asked = examples + heldout
    documents = embedder.embed([document_text(q, answers[i]) for i, q in examples])
    return Labelled(
        documents=np.vstack([documents, np.zeros((len(heldout), documents.shape[1]), dtype=np.float32)]),
        questions=embedder.embed([q for _, q in asked]),
        answers=[i for i, _ in asked],
    )


def main() -> None:
    answers, roles, oos = load_subset()
    embedder = SentenceEmbedder()
    taught, used, heldout = roles["teach"], roles["use"], roles["heldout"]
    figures: dict[str, object] = {}
    for stage, examples in (("A: taught only", taught), ("B: after a week's feedback", taught + used)):
        data = labelled(embedder, answers, examples, heldout)
        rows = list(range(len(examples), len(examples) + len(heldout)))
        line = {"embedder alone": top1_hits(data, rows, None)}
        learn = askable(data, range(len(taught), len(examples)))
        if learn:
            adapter = fit_query_adapter(data, learn)
            line["with the adapter"] = top1_hits(data, rows, adapter)
            half = {i for i, _ in taught[: len(taught) // 2]}
            partial = fit_query_adapter(data, [r for r in learn if data.answers[r] in half])
            for name, chosen in (("with feedback", True), ("without feedback", False)):
                subset = [r for r in rows if (data.answers[r] in half) == chosen]
                line[f"feedback on half: intents {name}"] = (
                    f"{top1_hits(data, subset, None)} -> {top1_hits(data, subset, partial)} of {len(subset)}"
                )
            outside = embedder.embed(oos)
            for name, matrix in (("embedder alone", None), ("with the adapter", adapter)):
                sims = ((matrix.apply(outside) if matrix else outside) @ data.documents[: len(examples)].T).max(axis=1)
                line[f"out-of-scope nearest similarity, {name} (p90 / max)"] = (
                    f"{np.quantile(sims, 0.9):.2f} / {sims.max():.2f}"
                )
        print(f"{stage}: held-out phrasings with their answer first, of {len(heldout)}")
        for key, value in line.items():
            print(f"  {key:<62} {value}")
        figures[stage] = line
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
