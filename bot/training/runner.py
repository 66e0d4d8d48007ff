"""Starts the training pipeline (python -m bot.finetune) in its own process and follows its progress.

The bot keeps answering while a LoRA trains: training never shares the serving process's model
or threads. One run at a time, across processes: the training process holds <data_dir>/loras/training/lock
for as long as it lives, even if the bot that started it dies.

Handing the run over to the child without a window where a second run could start: a starter holds
training/start.lock from its check that no run holds the run lock until its child has taken that
lock (and written its first status, which names it), so a second starter finds either lock held.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bot.config import SECRET_ENV_VARS, Settings, settings_without_secrets_json
from bot.ops import metrics
from bot.stores.lora_registry import LoraRegistry
from bot.training import remote
from bot.training.status import TrainingStatus, read_status

log = logging.getLogger(__name__)
RUN_LOCK = "lock"  # held by the training process for its whole life
START_LOCK = "start.lock"  # held by a starter until its child holds RUN_LOCK
PROBE_S = 0.2  # a probe holds a lock for an instant: a brief wait tells "held" from "being probed"
CLAIM_S = 10.0  # the child's wait for the run lock, which only probes hold after its starter's check
HANDOVER_S = 120.0  # the starter's wait for its child's first status (interpreter start on a busy machine)


def training_dir(data_dir: Path) -> Path:
    """Where the runner and the training process meet: the locks, the status file, the log. Beside
    the LoRA versions, so that replicas sharing the registry's volume (deploy/k8s) share them too:
    one run at a time across replicas, and every replica's `status` shows it."""
    return data_dir / "loras" / "training"


def _file_lock(path: Path) -> FileLock:
    # thread_local=False: a starter takes the start lock in one thread and releases it in another.
    return FileLock(str(path), thread_local=False)


def _lock_held(path: Path) -> bool:
    """True while any process holds the lock at `path` (a probe: taken and dropped at once)."""
    probe = _file_lock(path)
    try:
        probe.acquire(timeout=PROBE_S)
    except Timeout:
        return True
    probe.release()
    return False


def rotate(path: Path, backups: int) -> None:
    """Before a run: `path` becomes path.1 (path.1 becomes path.2, …), keeping `backups` earlier
    logs, so the log holds this run alone and the disk the last few (retention.log_backups)."""
    for number in range(backups, 0, -1):
        older = path.with_name(f"{path.name}.{number - 1}") if number > 1 else path
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{number}"))
    if backups == 0:
        path.unlink(missing_ok=True)
    path.with_name(f"{path.name}.{backups + 1}").unlink(missing_ok=True)  # left when the setting was lowered


def claim_run(data_dir: Path) -> FileLock:
    """The training process's hold on the one-run lock, to keep for its life. Raises Timeout when
    another run holds it. (The operating system drops it when the process ends, however it ends.)"""
    path = training_dir(data_dir) / RUN_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _file_lock(path)
    lock.acquire(timeout=CLAIM_S)
    return lock


@dataclass(frozen=True)
class StartResult:
    ok: bool
    message: str
    followup: Future[str] | None = None


class TrainingRunner:
    # What the interpreter runs for a run: tests put a stand-in pipeline here.
    entry: tuple[str, ...] = ("-m", "bot.finetune")

    def __init__(
        self,
        settings: Settings,
        registry: LoraRegistry,
        config_file: Path | None = None,
        on_finished: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.config_file = config_file
        self.on_finished = on_finished  # e.g. ask the generation worker to pick up a promotion now
        self.dir = training_dir(settings.data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.status_file = self.dir / "status.json"
        self.log_file = self.dir / "train.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def running(self) -> bool:
        """True while a run goes on or is being handed to its process, started by any process."""
        return _lock_held(self.dir / RUN_LOCK) or _lock_held(self.dir / START_LOCK)

    def start(self, triggered_by: str) -> StartResult:
        if self.settings.training.runner == "worker":
            return self._request(triggered_by)
        with self._lock:
            gate = _file_lock(self.dir / START_LOCK)
            try:
                gate.acquire(timeout=PROBE_S)
            except Timeout:  # another starter is handing its run over
                return StartResult(False, f"A training run is already going. {self.progress_text()}")
            try:
                if _lock_held(self.dir / RUN_LOCK):
                    gate.release()
                    return StartResult(False, f"A training run is already going. {self.progress_text()}")
                process = self._spawn(triggered_by)
            except BaseException:
                gate.release()
                raise
        followup: Future[str] = Future()
        threading.Thread(
            target=self._follow, args=(process, gate, followup), daemon=True, name="training-follow"
        ).start()
        log.info("training started by %s (pid %d)", triggered_by, process.pid)
        return StartResult(True, f"Training started (pid {process.pid}); I'll report here when it is done.", followup)

    def _request(self, triggered_by: str) -> StartResult:
        """Leave the run to a trainer elsewhere (`bot trainer`, bot/training/remote.py) that shares
        this directory; the followup completes when its run ends."""
        if self.running():
            return StartResult(False, f"A training run is already going. {self.progress_text()}")
        requested_at = time.time()
        if not remote.request_run(self.dir, triggered_by):
            return StartResult(False, "A training run is already requested; a trainer will start it.")
        followup: Future[str] = Future()
        threading.Thread(
            target=self._await_trainer, args=(requested_at, followup), daemon=True, name="training-follow"
        ).start()
        log.info("training requested by %s", triggered_by)
        return StartResult(
            True, "Training requested: a trainer will run it; I'll report here when it is done.", followup
        )

    def _await_trainer(self, requested_at: float, followup: Future[str]) -> None:
        timeout_s = self.settings.training.worker_timeout_s
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            status = self.read_status()
            if status is not None and status.started_at >= requested_at and status.phase in ("done", "failed"):
                self._after_run()
                followup.set_result(self.result_text(0 if status.phase == "done" else 1))
                return
            time.sleep(min(1.0, remaining))
        # A trainer that died or never ran: say so rather than wait forever. A request no trainer
        # took is withdrawn, so that the next `retrain` can ask again.
        taken = not remote.withdraw_request(self.dir)
        log.warning("training request not %s within %.0f s", "finished" if taken else "picked up", timeout_s)
        waited = f"{timeout_s / 60:g} minutes" if timeout_s >= 60 else f"{timeout_s:g} seconds"
        followup.set_result(
            f"The trainer has not {'finished' if taken else 'picked up'} the training request in {waited}; "
            "check `bot trainer`'s logs." + ("" if taken else " The request is withdrawn: `retrain` asks again.")
        )

    def _spawn(self, triggered_by: str) -> subprocess.Popen[bytes]:
        """Start the training process; the caller holds the start lock and no run holds the run lock."""
        self.registry.clean_staging()  # leftovers of crashed runs: no run is going
        rotate(self.log_file, self.settings.retention.log_backups)
        staging = self.registry.new_staging()
        self.status_file.unlink(missing_ok=True)
        # Older versions wrote the settings, tokens included, here: remove what they left.
        (self.dir / "settings.json").unlink(missing_ok=True)
        command = [
            sys.executable, *self.entry,
            "--data-dir", str(self.settings.data_dir),
            "--status-file", str(self.status_file),
            "--staging-dir", str(staging),
            "--triggered-by", triggered_by,
            "--settings", "-",
        ]  # fmt: skip
        # Training talks to no chat platform: its credentials stay in this process.
        env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_VARS}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_file, "ab") as log_handle:
            # Its own session: the run outlives the bot that started it (and its terminal's signals).
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=log_handle, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )  # fmt: skip
        self._send_settings(self._process)
        return self._process

    def _send_settings(self, process: subprocess.Popen[bytes]) -> None:
        """Hand the child this bot's settings over a pipe, so they never touch the disk."""
        stdin = process.stdin
        assert stdin is not None
        try:
            # A few KB: fits the pipe's buffer, so this rarely waits for the child to read.
            stdin.write(settings_without_secrets_json(self.settings).encode())
        except BrokenPipeError:  # the child died at once; its exit code and log say why
            log.warning("the training process exited before reading its settings")
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()  # end of input: the child reads to here

    def _hand_over(self, process: subprocess.Popen[bytes], gate: FileLock) -> None:
        """Keep the start lock until the child holds the run lock: its first status names it."""
        deadline = time.monotonic() + HANDOVER_S
        try:
            while process.poll() is None:
                status = self.read_status()
                if status is not None and status.pid == process.pid:
                    return
                if time.monotonic() > deadline:  # it never took the run lock: nothing to undo
                    log.error("the training process did not start within %.0f s; stopping it", HANDOVER_S)
                    process.kill()
                    return
                time.sleep(0.05)
        finally:
            gate.release()

    def _follow(self, process: subprocess.Popen[bytes], gate: FileLock, followup: Future[str]) -> None:
        self._hand_over(process, gate)
        code = process.wait()
        status = self.read_status()
        if status is not None:  # the run's own clock: from its start to its last word
            result = "failed" if code != 0 or status.phase == "failed" else "promoted" if status.promoted else "kept"
            metrics.TRAINING_SECONDS.labels(result).observe(status.updated_at - status.started_at)
        self._prune_candidates()
        self._after_run()
        followup.set_result(self.result_text(code))

    def _prune_candidates(self) -> None:
        """The run may have added a candidate: keep retention.keep_candidates of them."""
        try:
            pruned = self.registry.prune_candidates(
                self.settings.retention.keep_candidates, self.settings.tuning.keep_loaded
            )
        except Exception:  # housekeeping: the run's result still reaches the admin
            log.exception("could not prune old LoRA candidates (next run)")
            return
        if pruned:
            log.info("deleted old LoRA candidates %s (retention.keep_candidates)", ", ".join(pruned))

    def _after_run(self) -> None:
        try:
            if self.on_finished:
                self.on_finished()
        except Exception:
            log.exception("after-training hook failed")

    def result_text(self, exit_code: int) -> str:
        status = self.read_status()
        if exit_code != 0 or (status is not None and status.phase == "failed"):
            error = status.error if status is not None and status.error else None
            return (
                f"Training failed: {error or f'exit code {exit_code}; see {self.log_file}'}. "
                "The LoRA serving before keeps serving."
            )
        return status.summary if status is not None and status.summary else "Training finished."

    def read_status(self) -> TrainingStatus | None:
        """The last run's status (None before a run has written one)."""
        return read_status(self.status_file)

    def progress_text(self) -> str:
        return self._describe(self.read_status(), running=True)

    def status_text(self) -> str:
        """Training's line in `status`: the run's progress while one goes, else what the last did."""
        running = self.running()
        if not running and remote.requested(self.dir):
            return "Training: requested, waiting for a trainer (`bot trainer`)."
        return self._describe(self.read_status(), running)

    @staticmethod
    def _describe(status: TrainingStatus | None, running: bool) -> str:
        if status is None:
            return "Training: starting." if running else "Training: no run yet."
        if not running:
            plot = f"\nLoss curve: {status.loss_plot}" if status.loss_plot else ""
            return f"Last training: {status.summary or status.phase}{plot}"
        parts = [f"Training: {status.phase}"]
        if status.total_steps:
            parts.append(f"step {status.step}/{status.total_steps}")
        if status.loss is not None:
            parts.append(f"loss {status.loss:.3f}")
        if status.eta_s is not None:
            parts.append(f"ETA {status.eta_s:.0f} s")
        return ", ".join(parts)

    def wait(self, poll_s: float = 0.5, on_progress: Callable[[TrainingStatus], None] | None = None) -> int:
        """Block until this runner's child ends, reporting its progress once it has any; returns its exit code."""
        process = self._process
        if process is None:
            raise RuntimeError("no training started by this runner")
        while process.poll() is None:
            self._report(on_progress)
            time.sleep(poll_s)
        self._report(on_progress)
        return int(process.returncode)

    def _report(self, on_progress: Callable[[TrainingStatus], None] | None) -> None:
        if on_progress is not None and (status := self.read_status()) is not None:
            on_progress(status)

    def kill(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
