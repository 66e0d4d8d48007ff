"""The retriever's share of learning: a linear map on question vectors, learnt from feedback.

Every phrasing users asked that was upvoted or corrected becomes an example with its answer
(bot/feedback_rules.py), so the examples of one answer are phrasings real people used for it. A
retrain learns a matrix W that brings each example's question, mapped through W, nearest the other
examples with the same answer (a softmax over every stored example, the question's own example
left out). Only the question side changes: the stored vectors stay as they are, so there is nothing
to re-embed, and the map is one small file in the LoRA version it was trained with
(`query_adapter.npy`): promoted, swapped live and rolled back together with it, and recorded on
every reply (`retriever_version`). The idea is Chroma's "embedding adapters" report; the code is ours.

On the CLINC150 subset (bench/retrieval_adapter.py): the right answer first for 102 of 120 held-out
phrasings with the embedder alone, 107 with the map trained on a week's feedback.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ADAPTER_FILE = "query_adapter.npy"
# Training: full batch, Adam, a pull towards the identity so that questions unlike any feedback keep
# their neighbours (on intents that got no feedback: 55 -> 53 of 60 held-out, against 47 -> 54 on
# those that did).
STEPS, LEARNING_RATE, TEMPERATURE, TO_IDENTITY = 100, 1e-3, 0.05, 0.1


class QueryAdapter:
    """W, applied to unit question vectors (rows); the result is unit length again."""

    def __init__(self, matrix: np.ndarray) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"a query adapter is a square matrix, not {matrix.shape}")
        self.matrix = matrix.astype(np.float32)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        mapped = np.asarray(vectors, dtype=np.float32) @ self.matrix
        return mapped / np.maximum(np.linalg.norm(mapped, axis=-1, keepdims=True), 1e-12)

    def save(self, folder: Path) -> Path:
        path = folder / ADAPTER_FILE
        np.save(path, self.matrix)
        return path

    @classmethod
    def load(cls, folder: Path) -> QueryAdapter | None:
        """The adapter a LoRA version holds; None when it has none (trained before them, or the gate
        kept the embedder as it was)."""
        path = folder / ADAPTER_FILE
        return cls(np.load(path)) if path.is_file() else None


class AdapterFiles:
    """Adapters by version directory, each read once (a committed version never changes)."""

    def __init__(self) -> None:
        self._loaded: dict[Path, QueryAdapter | None] = {}
        self._lock = threading.Lock()

    def get(self, folder: Path) -> QueryAdapter | None:
        with self._lock:
            if folder not in self._loaded:
                self._loaded[folder] = QueryAdapter.load(folder)
            return self._loaded[folder]


@dataclass(frozen=True)
class Labelled:
    """Example vectors (`documents`, one row each, as the store embeds them) and the answer each
    belongs to; `questions` are the same examples' questions embedded alone, as users' messages are."""

    documents: np.ndarray
    questions: np.ndarray
    answers: Sequence[str]

    def positives(self, rows: Sequence[int]) -> np.ndarray:
        """For each question row: the other examples with its answer (its own example left out)."""
        answers = np.asarray(self.answers)
        same = answers[list(rows)][:, None] == answers[None, :]
        same[np.arange(len(rows)), list(rows)] = False
        return same


def askable(data: Labelled, rows: Sequence[int]) -> list[int]:
    """The rows whose answer has another example: only those say anything about retrieval."""
    return [r for r, has in zip(rows, data.positives(rows).any(axis=1), strict=True) if has] if rows else []


def top1_hits(data: Labelled, rows: Sequence[int], adapter: QueryAdapter | None) -> int:
    """How many of these questions find an example of their own answer first, their own example left out."""
    if not rows:
        return 0
    questions = data.questions[list(rows)]
    questions = adapter.apply(questions) if adapter else questions
    scores = questions @ data.documents.T
    scores[np.arange(len(rows)), list(rows)] = -np.inf
    best = scores.argmax(axis=1)
    return int(data.positives(rows)[np.arange(len(rows)), best].sum())


def fit_query_adapter(data: Labelled, rows: Sequence[int]) -> QueryAdapter:
    """W learnt on these question rows (each must have a positive: `askable`)."""
    import torch

    documents = torch.from_numpy(np.asarray(data.documents, dtype=np.float32))
    questions = torch.from_numpy(np.asarray(data.questions[list(rows)], dtype=np.float32))
    positives = torch.from_numpy(data.positives(rows))
    own = torch.zeros_like(positives)
    own[torch.arange(len(rows)), torch.tensor(list(rows))] = True
    identity = torch.eye(documents.shape[1])
    matrix = identity.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([matrix], lr=LEARNING_RATE)
    for _ in range(STEPS):
        mapped = torch.nn.functional.normalize(questions @ matrix, dim=1)
        log_p = ((mapped @ documents.T) / TEMPERATURE).masked_fill(own, -1e9).log_softmax(dim=1)
        loss = -log_p.masked_fill(~positives, -1e9).logsumexp(dim=1).mean()
        loss = loss + TO_IDENTITY * ((matrix - identity) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return QueryAdapter(matrix.detach().numpy())
