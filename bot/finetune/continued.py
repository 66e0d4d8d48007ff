"""A retrain that continues the serving LoRA on what is new since it trained, with a replay sample of the rest.

Trained from scratch, a retrain costs time in proportion to every example the bot ever collected
(issue 31: 18 minutes for a week of feedback on a 2-core CPU). The serving LoRA already answers from
the examples it trained on, so a retrain continues it on the examples added or changed since (their
question and answer as text: an edited answer is new) and a seeded sample of the old ones, which
keeps it from drifting off them. Its length follows the new feedback, not the bot's age; the gate
decides as before, against the LoRA it continued.

Every version keeps the keys of the pairs it has learned, its parent's included (`TRAINED_FILE`), so
that the next run knows what is new. A LoRA without that file (trained before it existed), one of
another shape than the settings ask for, a store with nothing new, or `tuning.continue_training =
false` trains from scratch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.finetune.qlora import TARGET_MODULES
from bot.training.dataset import Pair, pair_key

TRAINED_FILE = "trained_pairs.json"


@dataclass(frozen=True)
class Parent:
    """The serving LoRA a retrain continues, and the pairs it has learned."""

    version: str
    path: Path
    seen: frozenset[str]


def parent_for(active: tuple[str, Path] | None, settings: Settings) -> Parent | None:
    """The serving LoRA to continue, or None when a retrain must start from scratch."""
    if active is None or not settings.tuning.continue_training:
        return None
    version, path = active
    try:
        seen = json.loads((path / TRAINED_FILE).read_text(encoding="utf-8"))["pairs"]
        shape = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError):
        return None
    if shape.get("r") != settings.training.lora_r or set(shape.get("target_modules") or ()) != set(TARGET_MODULES):
        return None
    return Parent(version, path, frozenset(seen))


def save_trained(directory: Path, parent: Parent | None, trained: Iterable[Pair]) -> int:
    """Record what this version has learned (its parent's pairs and its own); returns how many."""
    keys = set(parent.seen if parent else ()) | {pair_key(p.question, p.answer) for p in trained}
    (directory / TRAINED_FILE).write_text(json.dumps({"pairs": sorted(keys)}), encoding="utf-8")
    return len(keys)
