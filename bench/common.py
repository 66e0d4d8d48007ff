"""What the benches share: a core on the real model in a temporary data directory, and settings
swapped between measurements on the same loaded model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.config import Settings, load_settings
from bot.core import Core
from bot.wiring import build_core


def bench_core(tmp: Path, model_cache: Path) -> tuple[Settings, Core]:
    """Default settings and a core owning `tmp`/data (the bench is its only process)."""
    settings = load_settings(env={}, data_dir=str(tmp / "data"), model_cache=str(model_cache))
    return settings, build_core(settings.model_copy(update={"log_level": "WARNING"}), own_data_dir=True)


def with_values(settings: Settings, values: dict[str, Any]) -> Settings:
    """`settings` with `values` set, each under a setting's dotted name (`tuning.retrieval_k`)."""
    for dotted, value in values.items():
        section, _, name = dotted.rpartition(".")
        if section:
            value = getattr(settings, section).model_copy(update={name: value})
        settings = settings.model_copy(update={section or name: value})
    return settings


def use_settings(core: Core, settings: Settings) -> None:
    """Answer with `settings` from now on (retrieval, prompt and decoding read them per request)."""
    core.settings = settings
    core.generation.engine.settings = settings
