"""Opening the stores from settings: the example store (embedded or on a chromadb server), its
snapshot for the training process, and the feedback store (SQLite or PostgreSQL)."""

from __future__ import annotations

from bot.config import Settings
from bot.embedder import Embedder, SentenceEmbedder
from bot.stores.example_server import snapshot
from bot.stores.examples import ExampleStore
from bot.stores.feedback import FeedbackStore


def build_examples(settings: Settings, embedder: Embedder | None = None) -> ExampleStore:
    """The example store: on the chromadb server at `chroma_url`, else embedded in the data directory."""
    embedder = embedder or SentenceEmbedder(settings.embedder)
    if settings.chroma_url:
        return ExampleStore.remote(embedder, settings.chroma_url, token=settings.chroma_token)
    return ExampleStore(embedder, settings.data_dir / "chroma")


def snapshot_examples(settings: Settings) -> ExampleStore:
    """The examples as they are now, copied into memory: the training process's (bot.stores.example_server)."""
    embedder = SentenceEmbedder(settings.embedder)
    return snapshot(settings.data_dir, embedder, lambda: build_examples(settings, embedder))


def build_feedback(settings: Settings) -> FeedbackStore:
    """PostgreSQL when `database_url` is set (replicas share it), else the data directory's SQLite file."""
    return FeedbackStore(settings.database_url or settings.data_dir / "feedback.sqlite3")
