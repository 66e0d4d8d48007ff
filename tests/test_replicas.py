"""Replicas swap together: two real bot processes share one LoRA registry (a shared volume, as in
deploy/k8s/), and a promotion or a rollback made anywhere is served by both within seconds, each
reply recording the version that wrote it."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.stores.feedback import FeedbackStore
from bot.stores.lora_registry import LoraRegistry
from tests.conftest import MODEL_CACHE, REPO, commit_lora

FOLLOW_S = 15.0  # "within a few seconds": the worker polls the registry every second


class Replica:
    """`bot chat` in its own process, driven line by line like a terminal."""

    def __init__(self, data_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "SLACK_", "DISCORD_"))}
        # lora_for=all: the LoRA writes every reply, so each one says which version served it.
        env.update(PYTHONPATH=str(REPO), BOT_MODEL_CACHE=str(MODEL_CACHE), BOT_TUNING_LORA_FOR="all",
                   BOT_MAX_NEW_TOKENS="4", HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False")  # fmt: skip
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "--data-dir", str(data_dir), "chat"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("Chat with the bot", timeout=300)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} from the replica on {self.data_dir}; it said:\n{''.join(seen)[-3000:]}")

    def serving(self) -> str:
        """Ask once; the version the reply's footer names ("base" for the base model)."""
        assert self.process.stdin is not None
        self.process.stdin.write("hello\n")
        self.process.stdin.flush()
        footer = self.wait_for(" examples]")
        return footer.split("lora ", 1)[1].split(",", 1)[0]

    def follows(self, version: str) -> float:
        """Seconds until replies are written by `version`."""
        started = time.monotonic()
        while self.serving() != version:
            assert time.monotonic() - started < FOLLOW_S, f"{self.data_dir} still not serving {version}"
            time.sleep(0.5)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("/quit\n")
            self.process.stdin.flush()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    shared = tmp_path / "shared-loras"  # the shared volume
    shared.mkdir()
    started: list[Replica] = []
    try:
        for name in ("a", "b"):
            data_dir = tmp_path / name
            data_dir.mkdir()
            (data_dir / "loras").symlink_to(shared)  # mounted at <data_dir>/loras in each pod
            started.append(Replica(data_dir))
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.mark.slow
def test_two_replicas_follow_a_promotion_and_a_rollback(replicas: list[Replica], random_loras, real_files) -> None:
    first, second = replicas
    assert first.serving() == second.serving() == "base"
    settings = load_settings(env={}, data_dir=str(first.data_dir), model_cache=str(MODEL_CACHE))
    registry = LoraRegistry.open(settings, real_files.fingerprint)
    version = commit_lora(registry, random_loras[0])
    registry.use(version, by="cli:local")  # as `bot lora use` or a promotion by either replica's trainer

    followed = [replica.follows(version) for replica in replicas]
    registry.rollback(by="cli:local")
    rolled_back = [replica.follows("base") for replica in replicas]
    print(f"followed a promotion in {followed} s, a rollback in {rolled_back} s")

    for replica in replicas:
        store = FeedbackStore(replica.data_dir / "feedback.sqlite3")
        served = [e.lora_version for e in store.exchanges()]
        store.close()
        assert served[0] is None and version in served and served[-1] is None, served
