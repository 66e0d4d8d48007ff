"""Training off the serving machine: a bot configured with `training.runner = "worker"` leaves a
request in the training directory (on the registry's shared volume), and `bot trainer`, running
wherever the training should (a GPU node, a Kubernetes Job or Deployment), takes it and runs the
same pipeline there. The serving replicas pick the new LoRA up from the registry, and the one-run
lock in the same directory still allows one run at a time across all of them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class Started(Protocol):
    ok: bool
    message: str


class Runs(Protocol):
    """What `serve` needs of the training runner (bot/training/runner.py, which imports this module)."""

    dir: Path

    def start(self, triggered_by: str) -> Started: ...

    def wait(self, poll_s: float = 0.5, on_progress: Callable[..., None] | None = None) -> int: ...

    def result_text(self, exit_code: int) -> str: ...


REQUEST = "request.json"
TAKEN = "request.taken.json"


def request_run(directory: Path, triggered_by: str) -> bool:
    """Leave a request; False when one already waits (created exclusively: one per directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(directory / REQUEST, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump({"triggered_by": triggered_by, "requested_at": time.time()}, handle)
    return True


def requested(directory: Path) -> bool:
    return (directory / REQUEST).exists() or (directory / TAKEN).exists()


def withdraw_request(directory: Path) -> bool:
    """Remove a request no trainer has taken; False when one took it first (or none waits)."""
    try:
        (directory / REQUEST).unlink()
    except FileNotFoundError:
        return False
    return True


def take_request(directory: Path) -> str | None:
    """Who asked, for the request this trainer now owns (an atomic rename: one trainer takes it)."""
    try:
        os.rename(directory / REQUEST, directory / TAKEN)
    except FileNotFoundError:
        return None
    try:
        return str(json.loads((directory / TAKEN).read_text())["triggered_by"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"  # a damaged request still asked for a run


def serve(runner: Runs, once: bool = False, poll_s: float = 1.0,
          on_progress: Callable[..., None] | None = None) -> int:  # fmt: skip
    """Take requests and run them here, one at a time; with `once`, the first and return its exit code."""
    while True:
        who = take_request(runner.dir)
        if who is None:
            time.sleep(poll_s)
            continue
        started = runner.start(triggered_by=who)
        if not started.ok:  # a run is going (started elsewhere): the request waits for it to end
            log.info("%s", started.message)
            os.replace(runner.dir / TAKEN, runner.dir / REQUEST)
            time.sleep(poll_s)
            continue
        code = runner.wait(on_progress=on_progress)
        (runner.dir / TAKEN).unlink(missing_ok=True)
        log.info("%s", runner.result_text(code))
        if once:
            return code
