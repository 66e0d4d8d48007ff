"""What the benches share: a core on the real model in a temporary data directory, and settings
swapped between measurements on the same loaded model."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings, load_settings
from bot.core import Core
from bot.wiring import build_core


def bench_core(tmp: Path, model_cache: Path) -> tuple[Settings, Core]:
    """Default settings and a core owning `tmp`/data (the bench is its only process)."""
    settings = load_settings(env={}, data_dir=str(tmp / "data"), model_cache=str(model_cache))
    return settings, build_core(settings.model_copy(update={"log_level": "WARNING"}), own_data_dir=True)


def use_settings(core: Core, settings: Settings) -> None:
    """Answer with `settings` from now on (retrieval, prompt and decoding read them per request)."""
    core.settings = settings
    core.generation.engine.settings = settings
