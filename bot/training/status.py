"""A training run's progress: one typed record, written by the training process, read by the bot.

The file is JSON, replaced atomically, so a reader never sees half of it. The same model writes
(`StatusFile`) and reads (`read_status`) it: a field renamed in one place cannot be missed in another.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger(__name__)
Phase = Literal["loading", "dataset", "training", "evaluating", "committing", "done", "failed"]


class TrainingStatus(BaseModel):
    # forbid: a misspelt field in an update fails in the writer instead of vanishing for the readers
    model_config = ConfigDict(extra="forbid")

    pid: int  # the training process; it holds the one-run lock for its life (bot.training.runner)
    started_at: float
    updated_at: float
    phase: Phase = "loading"
    # while training
    step: int = 0
    total_steps: int | None = None
    loss: float | None = None
    eta_s: float | None = None
    epoch: float | None = None
    # while evaluating: questions asked of both models
    done: int = 0
    total: int | None = None
    # at the end
    summary: str | None = None
    error: str | None = None
    loss_plot: str | None = None
    version: str | None = None
    promoted: bool | None = None
    reason: str | None = None
    manifest: dict[str, Any] | None = None


class StatusFile:
    """The writer: this process's run, rewritten whole at every update."""

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: kept in memory only
        now = time.time()
        self.current = TrainingStatus(pid=os.getpid(), started_at=now, updated_at=now)

    def update(self, **fields: Any) -> None:
        self.current = TrainingStatus.model_validate({**self.current.model_dump(), **fields, "updated_at": time.time()})
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # default=str: a library value in the manifest must not cost the run its status
        temp.write_text(json.dumps(self.current.model_dump(), ensure_ascii=False, default=str), encoding="utf-8")
        os.replace(temp, self.path)


def read_status(path: Path) -> TrainingStatus | None:
    """The run's last status; None before a run has written one."""
    try:
        return TrainingStatus.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValidationError as exc:  # not ours (the writer replaces it whole): say so, show none
        log.warning("ignoring the unreadable training status %s: %s", path, exc)
        return None
