"""Labeled examples in a chromadb collection, embedded with the sentence embedder (bot/embedder.py),
and the examples file format (`bot examples import`).

We always pass our own embeddings: chromadb's default embedding function downloads a model, which
cannot work offline. An example's id is a hash of its input and output, so importing the same file
twice updates instead of duplicating.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bot.embedder import Embedder
from bot.jsonl import read_jsonl
from bot.query_adapter import QueryAdapter
from bot.types import ALL_SCOPES, GLOBAL_SCOPE, Example, UserError

log = logging.getLogger(__name__)
LABELS = ("good", "bad")
# Every example as stored: ids, metadatas, and the embeddings as float32 rows.
Rows = tuple[list[str], list[dict[str, Any]], np.ndarray]
_UPSERT_BATCH = 2000  # below chromadb's maximum batch size
# An example this similar to a better one adds nothing to the prompt but length.
DEDUP_SIMILARITY = 0.95


def example_id(input_text: str, output_text: str, scope: str = GLOBAL_SCOPE) -> str:
    """Global examples keep the plain hash of question and answer; a scoped one's id includes its scope."""
    key = f"{input_text.strip()}\x1f{output_text.strip()}" + (f"\x1f{scope}" if scope else "")
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def document_text(input_text: str, output_text: str) -> str:
    # Question and answer embedded together found the right example more often (97% vs 95% top-3).
    return f"{input_text}\n{output_text}"


@dataclass(frozen=True)
class ParsedExample:
    input: str
    output: str
    label: str


def parse_example(record: dict[str, Any]) -> ParsedExample:
    """One examples-file record, checked."""
    missing = [key for key in ("input", "output") if not isinstance(record.get(key), str) or not record[key].strip()]
    if missing:
        raise ValueError(f"missing or empty {' and '.join(missing)}")
    label = record.get("label", "good")
    if label not in LABELS:
        raise ValueError(f"label {label!r} is not one of {', '.join(LABELS)}")
    return ParsedExample(record["input"].strip(), record["output"].strip(), label)


def parse_examples_file(path: Path) -> list[ParsedExample]:
    """Read and validate a whole JSONL file of {"input", "output", "label"?} before anything is written."""
    return read_jsonl(path, parse_example, what="nothing was imported")


class ExampleStore:
    """The example collection. Retrieval returns good examples, best first."""

    def __init__(
        self,
        embedder: Embedder,
        path: Path | None = None,
        client: Any | None = None,
        collection: str = "examples",
    ) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        if client is None:
            if path is None:
                raise ValueError("ExampleStore needs a path or a chromadb client")
            path.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
        self.embedder = embedder
        self._collection = client.get_or_create_collection(
            collection, embedding_function=None, metadata={"hnsw:space": "cosine"}
        )

    @classmethod
    def remote(cls, embedder: Embedder, url: str, collection: str = "examples", token: str = "") -> ExampleStore:
        """The store on a chromadb server (`chroma run`, its Docker image), shared by every replica;
        `token` goes as `Authorization: Bearer` on every request (the server's auth proxy checks it)."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"chroma_url {url!r} must look like http://host:8000")
        port = parts.port or (443 if parts.scheme == "https" else 8000)
        client = chromadb.HttpClient(
            host=parts.hostname,
            port=port,
            ssl=parts.scheme == "https",
            headers={"Authorization": f"Bearer {token}"} if token else None,
            settings=ChromaSettings(anonymized_telemetry=False),
        )
        return cls(embedder, client=client, collection=collection)

    @classmethod
    def in_memory(cls, embedder: Embedder) -> ExampleStore:
        """A store private to this process, in memory: a snapshot's home (see bot.stores.example_server)."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
        # One in-memory chromadb per process: a collection of its own keeps snapshots apart.
        return cls(embedder, client=client, collection=f"snapshot-{uuid.uuid4().hex}")

    def count(self) -> int:
        return int(self._collection.count())

    def upsert(
        self,
        items: Sequence[ParsedExample],
        source: str,
        exchange_id: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        scope: str = GLOBAL_SCOPE,
    ) -> list[str]:
        """Embed and store examples; returns their ids. `progress(done, total)` after each batch."""
        ids: list[str] = []
        now = time.time()
        for start in range(0, len(items), _UPSERT_BATCH):
            batch = items[start : start + _UPSERT_BATCH]
            batch_ids = [example_id(item.input, item.output, scope) for item in batch]
            vectors = self.embedder.embed([document_text(item.input, item.output) for item in batch])
            metadatas: list[dict[str, str | float]] = [
                {
                    "input": item.input,
                    "output": item.output,
                    "label": item.label,
                    "source": source,
                    "created_at": now,
                    "exchange_id": exchange_id or "",
                    "scope": scope,
                }
                for item in batch
            ]
            # chromadb rejects duplicate ids inside one upsert: keep the last of each.
            unique = {i: (i, v, m) for i, v, m in zip(batch_ids, vectors, metadatas, strict=True)}
            rows = list(unique.values())
            self._collection.upsert(
                ids=[r[0] for r in rows],
                embeddings=[r[1].tolist() for r in rows],
                metadatas=[r[2] for r in rows],
                documents=[str(r[2]["input"]) for r in rows],
            )
            ids += batch_ids
            if progress:
                progress(min(start + _UPSERT_BATCH, len(items)), len(items))
        return ids

    def add(
        self,
        input_text: str,
        output_text: str,
        label: str,
        source: str,
        exchange_id: str | None = None,
        scope: str = GLOBAL_SCOPE,
    ) -> str:
        """Store one example, replacing one with the same id (question, answer and scope)."""
        item = ParsedExample(input_text.strip(), output_text.strip(), label)
        return self.upsert([item], source, exchange_id, scope=scope)[0]

    def add_if_new(self, input_text: str, output_text: str, source: str, exchange_id: str, scope: str) -> str | None:
        """Store a good example unless the same question and answer is already an example, globally or
        in `scope`; an existing one keeps its label and provenance. Returns the new id, or None."""
        ids = [example_id(input_text, output_text, GLOBAL_SCOPE), example_id(input_text, output_text, scope)]
        if self.get(ids):
            return None
        return self.add(input_text, output_text, "good", source, exchange_id, scope)

    def remove(self, ids: Sequence[str]) -> int:
        """Remove examples by id; returns how many existed."""
        if not ids:
            return 0  # chromadb rejects an empty id list
        existing = self._collection.get(ids=list(ids), include=[])["ids"]
        if existing:
            self._collection.delete(ids=existing)
        return len(existing)

    def get(self, ids: Sequence[str]) -> list[Example]:
        if not ids:
            return []  # chromadb rejects an empty id list
        result = self._collection.get(ids=list(ids), include=["metadatas"])
        by_id = {i: _example(i, m) for i, m in zip(result["ids"], result["metadatas"], strict=True)}
        return [by_id[i] for i in ids if i in by_id]

    def list(
        self, limit: int | None = None, offset: int = 0, label: str | None = None, scopes: Sequence[str] = ()
    ) -> list[Example]:
        """Stored examples, oldest first; with `label`, only those; with `scopes`, only those scopes'."""
        clauses: list[dict[str, Any]] = [{"label": label}] if label else []
        if scopes:
            clauses.append({"scope": {"$in": list(scopes)}})
        where = clauses[0] if len(clauses) == 1 else {"$and": clauses} if clauses else None
        result = self._collection.get(include=["metadatas"], limit=limit, offset=offset, where=where)
        examples = [_example(i, m) for i, m in zip(result["ids"], result["metadatas"], strict=True)]
        return sorted(examples, key=lambda e: (e.created_at, e.id))

    def rows(self) -> Rows:
        """Every example exactly as stored, embeddings included, to copy into another store."""
        result = self._collection.get(include=["metadatas", "embeddings"])
        ids = list(result["ids"])
        vectors = np.asarray(result["embeddings"], dtype=np.float32) if ids else np.zeros((0, 0), np.float32)
        return ids, [dict(m) for m in result["metadatas"]], vectors

    def load_rows(self, rows: Rows) -> None:
        """Store rows from `rows()` as they are: no re-embedding, provenance and labels kept."""
        ids, metadatas, vectors = rows
        for start in range(0, len(ids), _UPSERT_BATCH):
            end = start + _UPSERT_BATCH
            self._collection.upsert(
                ids=ids[start:end],
                embeddings=vectors[start:end].tolist(),
                metadatas=metadatas[start:end],
                documents=[str(m["input"]) for m in metadatas[start:end]],
            )

    def retrieve(
        self,
        text: str,
        k: int,
        min_similarity: float,
        dedup_similarity: float = DEDUP_SIMILARITY,
        scope: str = GLOBAL_SCOPE,
        adapter: QueryAdapter | None = None,
    ) -> list[Example]:
        """Top-k good examples above the similarity floor that `scope` may see (global ones and its
        own; ALL_SCOPES sees every one), best first, near-duplicates removed. `adapter`: the serving
        LoRA version's query map (bot/query_adapter.py), applied to the question's vector."""
        if k <= 0:
            return []
        vector = self.embedder.embed([text])[0]
        query = (adapter.apply(vector) if adapter else vector).tolist()
        # No count() first (9 ms at 100k examples, a third of a retrieval): chromadb returns fewer
        # than n_results, or none, from a smaller collection.
        allowed = None if scope == ALL_SCOPES else {GLOBAL_SCOPE, scope}
        # No `where` filter first: chromadb's metadata filter costs ~350 ms at 100k examples against
        # ~3 ms for a plain nearest-neighbour query (bench/serving.py), so bad examples and other
        # scopes' are skipped here, from a few extra candidates.
        candidates = self._query(query, k * 4, None)
        chosen = _choose(candidates, k, min_similarity, dedup_similarity, allowed)
        crowded_out = allowed is not None and any(str(m.get("scope", "")) not in allowed for _, m, _, _ in candidates)
        if len(chosen) < k and crowded_out:
            # Other scopes' examples filled the candidates: ask again for this scope's only.
            where = {"scope": {"$in": sorted(allowed)}}
            candidates = self._query(query, k * 4, where)
            chosen = _choose(candidates, k, min_similarity, dedup_similarity, allowed)
        return chosen

    def _query(self, query: list[float], n: int, where: dict[str, Any] | None) -> list[_Candidate]:
        result = self._collection.query(
            query_embeddings=[query], n_results=n, where=where, include=["metadatas", "distances", "embeddings"]
        )
        return list(
            zip(result["ids"][0], result["metadatas"][0], result["distances"][0], result["embeddings"][0], strict=True)
        )


_Candidate = tuple[str, dict[str, Any], float, Any]  # id, metadata, distance, embedding


def _choose(
    candidates: list[_Candidate], k: int, min_similarity: float, dedup_similarity: float, allowed: set[str] | None
) -> list[Example]:
    chosen: list[Example] = []
    chosen_vectors: list[np.ndarray] = []
    answers: set[str] = set()  # another phrasing of a chosen example's question gives the prompt nothing
    for ex_id, meta, distance, vector in candidates:
        similarity = 1.0 - float(distance)
        if similarity < min_similarity:
            break  # results come sorted by distance
        if meta.get("label") != "good" or (allowed is not None and str(meta.get("scope", "")) not in allowed):
            continue
        vector = np.asarray(vector, dtype=np.float32)
        answer = " ".join(str(meta["output"]).lower().split())
        if answer in answers or any(float(vector @ other) >= dedup_similarity for other in chosen_vectors):
            continue
        chosen.append(_example(ex_id, meta, similarity))
        chosen_vectors.append(vector)
        answers.add(answer)
        if len(chosen) == k:
            break
    return chosen


def _example(ex_id: str, meta: dict[str, Any], similarity: float | None = None) -> Example:
    return Example(
        id=ex_id,
        input=str(meta["input"]),
        output=str(meta["output"]),
        label=str(meta.get("label", "good")),
        source=str(meta.get("source", "")),
        created_at=float(meta.get("created_at", 0.0)),
        exchange_id=str(meta.get("exchange_id") or "") or None,
        similarity=similarity,
        scope=str(meta.get("scope", GLOBAL_SCOPE)),
    )
