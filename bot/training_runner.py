"""Starts the training pipeline (bot.training) in its own process and follows its progress.

The bot keeps answering while a LoRA trains: training never shares the serving process's model
or threads. One run at a time, across processes: the child holds an exclusive lock on
<data_dir>/training/lock for as long as it lives, even if the bot that started it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
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

from bot.config import SECRET_ENV_VARS, Settings, settings_without_secrets_json
from bot.lora_registry import LoraRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartResult:
    ok: bool
    message: str
    followup: Future[str] | None = None


class TrainingRunner:
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
        self.dir = settings.data_dir / "training"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.status_file = self.dir / "status.json"
        self.log_file = self.dir / "train.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def running(self) -> bool:
        """True while any process (this one's child or another's) holds the training lock."""
        with open(self.dir / "lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def start(self, triggered_by: str) -> StartResult:
        with self._lock:
            lock = open(self.dir / "lock", "a+")  # noqa: SIM115 - handed to the child, closed below
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                return StartResult(False, f"A training run is already going. {self.progress_text()}")
            try:
                self.registry.clean_staging()  # leftovers of crashed runs; we hold the lock
                staging = self.registry.new_staging()
                self.status_file.unlink(missing_ok=True)
                # Older versions wrote the settings, tokens included, here: remove what they left.
                (self.dir / "settings.json").unlink(missing_ok=True)
                command = [
                    sys.executable, "-m", "bot.training",
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
                    # pass_fds: the child inherits the locked file, so the lock lives as long as it does.
                    self._process = subprocess.Popen(
                        command, stdin=subprocess.PIPE, stdout=log_handle, stderr=subprocess.STDOUT,
                        pass_fds=(lock.fileno(),), env=env, start_new_session=True,
                    )  # fmt: skip
                self._send_settings(self._process)
            finally:
                lock.close()
            process = self._process
        followup: Future[str] = Future()
        threading.Thread(target=self._follow, args=(process, followup), daemon=True, name="training-follow").start()
        log.info("training started by %s (pid %d)", triggered_by, process.pid)
        return StartResult(True, f"Training started (pid {process.pid}); I'll report here when it is done.", followup)

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

    def _follow(self, process: subprocess.Popen[bytes], followup: Future[str]) -> None:
        code = process.wait()
        try:
            if self.on_finished:
                self.on_finished()
        except Exception:
            log.exception("after-training hook failed")
        followup.set_result(self.result_text(code))

    def result_text(self, exit_code: int) -> str:
        status = self.read_status()
        if exit_code != 0 or status.get("phase") == "failed":
            error = status.get("error") or f"exit code {exit_code}; see {self.log_file}"
            return f"Training failed: {error}. The LoRA serving before keeps serving."
        return str(status.get("summary") or "Training finished.")

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def progress_text(self) -> str:
        status = self.read_status()
        if not status:
            return "Training: starting."
        phase = status.get("phase", "?")
        parts = [f"Training: {phase}"]
        if status.get("total_steps"):
            parts.append(f"step {status.get('step', 0)}/{status['total_steps']}")
        if status.get("loss") is not None:
            parts.append(f"loss {float(status['loss']):.3f}")
        if status.get("eta_s") is not None:
            parts.append(f"ETA {float(status['eta_s']):.0f} s")
        return ", ".join(parts)

    def status_text(self) -> str:
        if self.running():
            return self.progress_text()
        status = self.read_status()
        if not status:
            return "Training: no run yet."
        lines = [f"Last training: {status.get('summary') or status.get('phase')}"]
        if status.get("loss_plot"):
            lines.append(f"Loss curve: {status['loss_plot']}")
        return "\n".join(lines)

    def wait(self, poll_s: float = 0.5, on_progress: Callable[[dict[str, Any]], None] | None = None) -> int:
        """Block until this runner's child ends, reporting progress; returns its exit code."""
        process = self._process
        if process is None:
            raise RuntimeError("no training started by this runner")
        while process.poll() is None:
            if on_progress:
                on_progress(self.read_status())
            time.sleep(poll_s)
        if on_progress:
            on_progress(self.read_status())
        return int(process.returncode)

    def kill(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
