"""Two processes, one data directory: the CLI and the trainer beside a running bot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from filelock import FileLock, Timeout

from bot.stores.example_server import (
    LOCK_FILE,
    SOCKET_FILE,
    DataDirOwner,
    RemoteExamples,
    examples_access,
    snapshot,
)
from bot.stores.examples import ExampleStore, example_id
from bot.stores.lora_registry import LoraRegistry
from bot.training import remote
from bot.training.runner import TrainingRunner
from bot.training.status import StatusFile, TrainingStatus, read_status
from bot.types import UserError
from tests import conftest
from tests.fakes import FakeEmbedder

QUESTION = "How do I rotate the VPN certificate?"
ANSWER = "Run vpnctl rotate and restart the client."


@pytest.fixture
def bot_owner(tmp_path: Path) -> Iterator[tuple[Path, ExampleStore]]:
    """A running bot's hold on its data directory: the owner lock, its store, its control socket."""
    data_dir = tmp_path / "data"
    owner = DataDirOwner.acquire(data_dir)
    store = ExampleStore(FakeEmbedder(), data_dir / "chroma")
    owner.serve(store)
    yield data_dir, store
    owner.close()


def _bot_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`bot --data-dir DATA_DIR ARGS...` in its own process, with no settings but the data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "SLACK_", "DISCORD_"))}
    env.update(PYTHONPATH=str(conftest.REPO), COLUMNS="300")  # one line per message
    return subprocess.run(
        [sys.executable, "-m", "bot", "--data-dir", str(data_dir), *args],
        cwd=data_dir.parent, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _never_open() -> ExampleStore:
    raise AssertionError("opened the bot's store from a second process")


def test_cli_import_and_remove_while_the_bot_runs_go_through_the_bot(
    bot_owner: tuple[Path, ExampleStore], tmp_path: Path
) -> None:
    data_dir, store = bot_owner
    file = tmp_path / "vpn.jsonl"
    file.write_text(json.dumps({"input": QUESTION, "output": ANSWER}) + "\n")

    imported = _bot_cli(data_dir, "examples", "import", str(file))
    assert imported.returncode == 0, imported.stderr
    # The bot retrieves it at once: written by the bot's own store, not behind its index's back.
    found = store.retrieve("rotate the VPN certificate", k=3, min_similarity=0.2, dedup_similarity=0.95)
    assert [(e.id, e.output, e.source) for e in found] == [(example_id(QUESTION, ANSWER), ANSWER, "import:vpn.jsonl")]
    assert "(1 in the store)" in imported.stderr

    removed = _bot_cli(data_dir, "examples", "remove", example_id(QUESTION, ANSWER))
    assert removed.returncode == 0, removed.stderr
    assert store.count() == 0
    assert store.retrieve("rotate the VPN certificate", k=3, min_similarity=0.2, dedup_similarity=0.95) == []


def test_a_write_while_the_owner_lock_is_held_is_refused_never_done_directly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    holder = FileLock(str(data_dir / LOCK_FILE), thread_local=False)
    holder.acquire()  # held, and nothing answers on the socket: a bot starting, another command
    try:
        started = time.monotonic()
        with pytest.raises(UserError, match="does not answer"), examples_access(data_dir, _never_open, wait_s=0.5):
            pass
        assert time.monotonic() - started < 10
    finally:
        holder.release()


def test_without_a_bot_the_cli_writes_directly_holding_the_lock(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with examples_access(data_dir, lambda: ExampleStore(FakeEmbedder(), data_dir / "chroma")) as store:
        assert isinstance(store, ExampleStore)
        store.add(QUESTION, ANSWER, "good", "import:x")
        with pytest.raises(Timeout):  # a bot starting now waits for this write to end
            FileLock(str(data_dir / LOCK_FILE), thread_local=False).acquire(timeout=0)
    with FileLock(str(data_dir / LOCK_FILE), thread_local=False).acquire(timeout=0):
        pass


def test_a_second_bot_on_the_same_data_dir_is_refused(bot_owner: tuple[Path, ExampleStore]) -> None:
    data_dir, _ = bot_owner
    with pytest.raises(UserError, match=rf"another bot \(pid {os.getpid()}\) is already running"):
        DataDirOwner.acquire(data_dir)


def test_control_socket_is_private_validates_rows_and_works_in_a_deep_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / ("deep-" * 20) / "data"  # longer than a Unix socket address may be
    owner = DataDirOwner.acquire(data_dir)
    store = ExampleStore(FakeEmbedder(), tmp_path / "chroma")
    owner.serve(store)
    try:
        assert len(str(data_dir / SOCKET_FILE)) > 107
        assert (data_dir / SOCKET_FILE).stat().st_mode & 0o777 == 0o600
        remote = RemoteExamples(data_dir)
        assert remote.ping() == os.getpid()
        with pytest.raises(UserError, match="label 'meh'"):
            remote.call({"op": "upsert", "source": "x", "rows": [{"input": "q", "output": "a", "label": "meh"}]})
        with pytest.raises(UserError, match="unknown operation"):
            remote.call({"op": "drop_everything"})
        assert store.count() == 0
    finally:
        owner.close()
    assert RemoteExamples(data_dir).ping() is None


def test_the_trainer_reads_a_snapshot_through_the_bot(bot_owner: tuple[Path, ExampleStore]) -> None:
    data_dir, store = bot_owner
    store.add(QUESTION, ANSWER, "good", "taught", "c1")
    store.add("Is the office open on Sunday?", "No.", "bad", "import:x")
    copy = snapshot(data_dir, FakeEmbedder(), open_local=_never_open)
    assert sorted((e.id, e.label, e.source, e.exchange_id) for e in copy.list()) == sorted(
        (e.id, e.label, e.source, e.exchange_id) for e in store.list()
    )
    assert [e.output for e in copy.retrieve(QUESTION, 3, 0.2, 0.95)] == [ANSWER]
    store.add("Where is the printer?", "Second floor.", "good", "vote")  # the bot goes on learning
    assert copy.count() == 2  # the run keeps the examples it started with


def test_without_a_bot_the_trainer_copies_the_store_under_the_lock(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = ExampleStore(FakeEmbedder(), data_dir / "chroma")
    store.add(QUESTION, ANSWER, "good", "taught")
    copy = snapshot(data_dir, FakeEmbedder(), open_local=lambda: store)
    assert [(e.id, e.source) for e in copy.list()] == [(example_id(QUESTION, ANSWER), "taught")]
    with FileLock(str(data_dir / LOCK_FILE), thread_local=False).acquire(timeout=0):
        pass  # released once the copy is taken: a bot may start while the run trains


# LoRA registry: writes from several processes ---------------------------------------------------

_COMMITTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bot.stores.lora_registry import LoraRegistry
    registry = LoraRegistry(Path(sys.argv[1]), "base", "fp1")
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together
    for _ in range(4):
        staging = registry.new_staging()
        (staging / "adapter_config.json").write_text("{}")
        version = registry.commit(staging, {})
        registry.promote(version.version, by="p")
    """
)


def test_registry_commits_and_promotions_from_many_processes_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "loras"
    start = f"{time.time() + 3:.3f}"
    env = {**os.environ, "PYTHONPATH": str(conftest.REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _COMMITTER, str(root), start], env=env, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    registry = LoraRegistry(root, "base", "fp1")
    assert [v.version for v in registry.versions()] == [f"v{i:04d}" for i in range(1, 17)]
    history = json.loads((root / "pointers.json").read_text())["history"]
    assert len(history) == 16  # every promotion recorded: no read-modify-write was lost


def _committed(registry: LoraRegistry) -> str:
    staging = registry.new_staging()
    (staging / "adapter_config.json").write_text("{}")
    return registry.commit(staging, {}).version


def test_promote_if_active_only_when_the_compared_version_still_serves(tmp_path: Path) -> None:
    registry = LoraRegistry(tmp_path / "loras", "base", "fp1")
    v1, v2, v3 = (_committed(registry) for _ in range(3))
    registry.promote(v1, by="t")
    assert registry.promote_if_active(v2, v1, by="trainer") is True
    assert registry.active_pointer() == v2
    registry.rollback(by="admin")  # v1 serves again
    assert registry.promote_if_active(v3, v2, by="trainer") is False
    assert registry.active_pointer() == v1 and registry.get(v3).status == "candidate"


# a training run and an admin's rollback meanwhile ---------------------------------------------


def test_a_training_run_does_not_undo_a_rollback_made_while_it_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.finetune.pipeline
    import bot.generation.model_files

    settings = conftest.test_settings(tmp_path / "data")
    monkeypatch.setattr(bot.generation.model_files, "prepare_model", lambda s: SimpleNamespace(fingerprint="fp1"))
    registry = LoraRegistry.open(settings, "fp1")
    v1, v2 = _committed(registry), _committed(registry)
    registry.promote(v1, by="t")
    registry.promote(v2, by="t")
    compared: list[Any] = []

    def train_candidate(settings: Any, staging: Path, by: str, status: Any, active: Any) -> dict[str, Any]:
        compared.append(active)
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "adapter_config.json").write_text("{}")
        LoraRegistry.open(settings, "fp1").rollback(by="slack:ADMIN")  # an admin, while this trains
        return {"promote": True, "reason": "no worse than the serving model", "timings": {"train_s": 1.0},
                "losses": [{"step": 1, "loss": 0.5}], "final_loss": 0.5, "continued_from": None,
                "dataset": {"counts": {"trained": 1, "old_replayed": 0}}}  # fmt: skip

    monkeypatch.setattr(bot.finetune.pipeline, "train_candidate", train_candidate)
    status_file = tmp_path / "status.json"
    bot.finetune.pipeline.run_pipeline(settings, registry.new_staging(), StatusFile(status_file), "slack:U1")

    assert compared == [(v2, registry.root / v2)]
    assert registry.active_pointer() == v1  # the rollback stands
    status = read_status(status_file)
    assert status is not None and status.phase == "done" and status.summary
    assert status.promoted is False and status.version == "v0003"
    assert registry.get("v0003").status == "candidate"
    assert "an admin changed the serving LoRA during training (from v0002 to v0001)" in status.summary
    assert "lora use v0003" in status.summary


# one training run at a time, held by the training process ---------------------------------------

# `python -m bot.finetune` as it runs, with a pipeline that trains until the test writes <data>/stop.
_TRAINING = textwrap.dedent(
    """
    import sys, time
    import bot.finetune.__main__ as training

    def pipeline(settings, staging, status, by):
        while not (settings.data_dir / "stop").exists():
            time.sleep(0.05)
        status.update(phase="done", summary=f"stand-in run by {by}")
        return {"reason": "stand-in"}

    training.run_pipeline = pipeline
    sys.exit(training.main(sys.argv[1:]))
    """
)

# A bot that starts a run and dies once the run is handed over, without a chance to clean up.
_STARTER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from tests.test_processes import stand_in_runner
    runner = stand_in_runner(Path(sys.argv[1]))
    started = runner.start("slack:U1")
    assert started.ok, started.message
    child = runner._process.pid
    while (status := runner.read_status()) is None or status.pid != child:
        time.sleep(0.05)
    print(child, flush=True)
    os._exit(0)
    """
)


def stand_in_runner(data_dir: Path) -> TrainingRunner:
    settings = conftest.test_settings(data_dir)
    runner = TrainingRunner(settings, LoraRegistry.open(settings, "fp1"))
    runner.entry = ("-c", _TRAINING)
    return runner


def test_one_training_run_at_a_time_held_by_the_training_process_after_its_starter_died(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(conftest.REPO)}
    starter = subprocess.run([sys.executable, "-c", _STARTER, str(data_dir)], cwd=conftest.REPO, env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert starter.returncode == 0, starter.stderr
    child = int(starter.stdout.split()[-1])
    runner = stand_in_runner(data_dir)
    try:
        assert runner.running()  # the lock lives in the training process, not in the bot that died
        refused = runner.start("slack:U2")
        assert not refused.ok and "already going" in refused.message
        status = _status(runner)
        assert status.pid == child and status.phase == "loading"
        assert runner.running()
    finally:
        (data_dir / "stop").touch()
    _wait_for(lambda: not runner.running(), "the run to end")
    assert _status(runner).summary == "stand-in run by slack:U1"

    started = runner.start("slack:U3")  # free again
    assert started.ok and started.followup is not None
    again = runner.start("slack:U4")  # while the first is being handed over, or runs
    assert not again.ok and "already going" in again.message
    assert started.followup.result(timeout=60) == "stand-in run by slack:U3"
    assert not runner.running()


def _wait_for(predicate: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _status(runner: TrainingRunner) -> TrainingStatus:
    status = runner.read_status()
    assert status is not None
    return status


def test_a_retrain_asked_on_a_replica_runs_on_the_trainer_and_reports_back(tmp_path: Path) -> None:
    """training.runner = "worker": the bot leaves a request; `bot trainer` elsewhere runs it."""
    data_dir = tmp_path / "data"
    serving = stand_in_runner(data_dir)  # a replica: it only asks
    serving.settings = serving.settings.model_copy(
        update={"training": serving.settings.training.model_copy(update={"runner": "worker"})}
    )
    asked = serving.start("slack:U1")
    assert asked.ok and asked.followup is not None and "requested" in asked.message
    again = serving.start("slack:U2")
    assert not again.ok and "already requested" in again.message
    assert "waiting for a trainer" in serving.status_text()

    # `bot trainer` in a process of its own (another machine, in production), on the shared directory.
    env = {**os.environ, "PYTHONPATH": str(conftest.REPO)}
    trainer = subprocess.Popen([sys.executable, "-c", _TRAINER, str(data_dir)], cwd=conftest.REPO, env=env)
    try:
        _wait_for(lambda: serving.read_status() is not None, "the trainer to start the run")
        refused = serving.start("slack:U3")
        assert not refused.ok and "already going" in refused.message, "one run at a time, replica and trainer"
        (data_dir / "stop").touch()
        assert asked.followup.result(timeout=60) == "stand-in run by slack:U1"
        assert trainer.wait(timeout=60) == 0
    finally:
        trainer.kill()
    assert not remote.requested(serving.dir) and not serving.running()


# `bot trainer --once` with the stand-in pipeline.
_TRAINER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bot.training import remote
    from tests.test_processes import stand_in_runner
    sys.exit(remote.serve(stand_in_runner(Path(sys.argv[1])), once=True, poll_s=0.05))
    """
)
