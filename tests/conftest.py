"""Shared fixtures: a core on fakes (fast) and a core on the real default model (loaded once)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.core import Core
from bot.feedback import FeedbackStore
from bot.generation import GenerationService
from bot.retrieval import ExampleStore
from tests.fakes import FakeBackend, FakeEmbedder

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
# One converted copy of the default model for every test run on this checkout.
MODEL_CACHE = Path(os.environ.get("BOT_TEST_MODEL_CACHE", REPO / ".cache" / "models"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: end-to-end on the real default model (make test runs them)")


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    overrides.setdefault("admins", ["console:local"])
    return load_settings(env={}, data_dir=str(data_dir), model_cache=str(MODEL_CACHE), **overrides)


MakeCore = Callable[..., Core]


@pytest.fixture
def make_core(tmp_path: Path) -> Iterator[MakeCore]:
    """make_core(generator=None, admins=(...), **settings) -> Core on a FakeBackend and FakeEmbedder."""
    services: list[GenerationService] = []
    stores: list[FeedbackStore] = []

    def factory(
        generator: FakeBackend | None = None, admins: tuple[str, ...] = ("console:local",), **overrides: Any
    ) -> Core:
        overrides.setdefault("min_similarity", 0.2)
        data_dir = tmp_path / f"data{len(services)}"
        settings = test_settings(data_dir, admins=list(admins), **overrides)
        service = GenerationService(generator or FakeBackend())
        store = FeedbackStore(data_dir / "feedback.sqlite3")
        services.append(service)
        stores.append(store)
        examples = ExampleStore(FakeEmbedder(), data_dir / "chroma")
        return Core(settings, service, examples, store)

    yield factory
    for service in services:
        service.close()
    for store in stores:
        store.close()
