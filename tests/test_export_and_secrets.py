"""Paths from chat stay in <data_dir>/exports/; platform secrets never reach the disk or training."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bot.config import Settings, load_settings, settings_without_secrets_json
from bot.finetune import __main__ as training
from bot.stores.lora_registry import LoraRegistry
from bot.training.runner import TrainingRunner, training_dir
from bot.types import ConversationKey
from tests.conftest import MakeCore

SLACK = ConversationKey("slack", "T1", "C1")
ADMIN = ("slack:UADMIN", "console:local")

# feedback export from chat ----------------------------------------------------------------------


def _export(core: Any, name: str, platform: str = "slack", user: str = "UADMIN") -> Any:
    return core.command(platform, user, f"feedback export {name}", SLACK)


def test_chat_export_cannot_overwrite_the_feedback_database(make_core: MakeCore, tmp_path: Path) -> None:
    core = make_core(admins=ADMIN)
    core.rules.teach("console", "local", "How do I reset?", "Open Settings.")
    db = core.settings.data_dir / "feedback.sqlite3"
    before = db.read_bytes()
    for name, why in [
        ("../feedback.sqlite3", "leaves the exports folder"),
        ("sub/../../feedback.sqlite3", "leaves the exports folder"),
        (str(db.resolve()), "is a full path"),
        (str(tmp_path / "elsewhere.jsonl"), "is a full path"),
    ]:
        result = _export(core, name)
        assert not result.ok and why in result.text, result.text
    assert db.read_bytes() == before
    assert not (tmp_path / "elsewhere.jsonl").exists()
    assert not (core.settings.data_dir / "exports").exists(), "a refusal changes nothing"


def test_chat_export_writes_a_new_file_under_exports_only(make_core: MakeCore) -> None:
    core = make_core(admins=ADMIN)
    core.rules.teach("console", "local", "How do I reset?", "Open Settings.")
    exports = core.settings.data_dir / "exports"
    result = _export(core, "week1.jsonl")
    assert result.ok, result.text
    assert len((exports / "week1.jsonl").read_text().splitlines()) == 1
    assert (exports / "week1.kto.jsonl").is_file()
    # An existing file, or an existing KTO sibling, is never replaced from chat.
    sft_before = (exports / "week1.jsonl").read_bytes()
    again = _export(core, "week1.jsonl")
    assert not again.ok and "week1.jsonl already exists" in again.text
    assert (exports / "week1.jsonl").read_bytes() == sft_before
    (exports / "week2.kto.jsonl").write_text("mine\n")
    sibling = _export(core, "week2.jsonl")
    assert not sibling.ok and "week2.kto.jsonl already exists" in sibling.text
    assert (exports / "week2.kto.jsonl").read_text() == "mine\n" and not (exports / "week2.jsonl").exists()


def test_chat_export_cannot_escape_through_a_link(make_core: MakeCore, tmp_path: Path) -> None:
    core = make_core(admins=ADMIN)
    exports = core.settings.data_dir / "exports"
    exports.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (exports / "out").symlink_to(outside)
    (exports / "dangling.jsonl").symlink_to(outside / "new.jsonl")
    for name in ("out/x.jsonl", "dangling.jsonl"):
        result = _export(core, name)
        assert not result.ok and "outside the exports folder" in result.text, result.text
    assert list(outside.iterdir()) == []


def test_terminal_export_keeps_full_paths(make_core: MakeCore, tmp_path: Path) -> None:
    core = make_core(admins=ADMIN)
    core.rules.teach("console", "local", "How do I reset?", "Open Settings.")
    target = tmp_path / "anywhere.jsonl"
    result = _export(core, str(target), platform="console", user="local")
    assert result.ok, result.text
    assert target.is_file()


# secrets and the training process ---------------------------------------------------------------

SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-secret-bot",
    "SLACK_APP_TOKEN": "xapp-secret-app",
    "SLACK_SIGNING_SECRET": "secret-signing",
    "DISCORD_TOKEN": "secret-discord",
}


def _secret_settings(data_dir: Path) -> Settings:
    return load_settings(env={**SECRETS, "BOT_DATA_DIR": str(data_dir), "BOT_TUNING_RETRIEVAL_K": "7"})


def test_the_training_payload_has_no_secret(tmp_path: Path) -> None:
    settings = _secret_settings(tmp_path)
    payload = settings_without_secrets_json(settings)
    assert not [value for value in SECRETS.values() if value in payload]
    back = Settings.model_validate_json(payload)
    assert back.tuning.retrieval_k == 7 and back.data_dir == tmp_path  # everything else travels
    assert (back.slack.bot_token, back.slack.app_token, back.discord.token) == ("", "", "")


class _FakeProcess:
    """What Popen returns, without running training: records what the child would get."""

    pid = 4242
    returncode = 0

    def __init__(self, command: list[str], **kwargs: Any) -> None:
        self.command = command
        self.kwargs = kwargs
        self.stdin = io.BytesIO()
        self.sent = b""
        close = self.stdin.close

        def keep_and_close() -> None:
            self.sent = self.stdin.getvalue()
            close()

        self.stdin.close = keep_and_close  # type: ignore[method-assign]

    def wait(self) -> int:
        return 0

    def poll(self) -> int:
        return 0


def test_training_runner_writes_no_secret_and_pipes_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var, value in SECRETS.items():
        monkeypatch.setenv(var, value)
    data_dir = tmp_path / "data"
    settings = _secret_settings(data_dir)
    training_dir(data_dir).mkdir(parents=True)
    (training_dir(data_dir) / "settings.json").write_text(settings.model_dump_json())  # an older version's
    started: list[_FakeProcess] = []

    def popen(command: list[str], **kwargs: Any) -> _FakeProcess:
        started.append(_FakeProcess(command, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    registry = SimpleNamespace(clean_staging=lambda: None, new_staging=lambda: data_dir / "staging")
    runner = TrainingRunner(settings, cast(LoraRegistry, registry))
    result = runner.start(triggered_by="slack:UADMIN")
    assert result.ok and result.followup is not None
    result.followup.result(timeout=10)

    (child,) = started
    assert child.command[-2:] == ["--settings", "-"] and child.kwargs["stdin"] == subprocess.PIPE
    assert Settings.model_validate_json(child.sent).tuning.retrieval_k == 7
    leaked = [value for value in SECRETS.values() if value.encode() in child.sent]
    assert not leaked
    assert not [var for var in SECRETS if var in child.kwargs["env"]], "the child's environment has no token"
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert not [value for value in SECRETS.values() if value.encode() in path.read_bytes()], path


def test_training_main_reads_settings_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(env={"BOT_DATA_DIR": str(tmp_path), "BOT_TUNING_RETRIEVAL_K": "9"})
    for var, value in (("HF_HUB_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False")):
        monkeypatch.setenv(var, value)  # main sets them; restored after the test
    monkeypatch.setattr("sys.stdin", io.StringIO(settings_without_secrets_json(settings)))
    seen: list[Settings] = []

    def pipeline(got: Settings, *args: Any) -> dict[str, Any]:
        seen.append(got)
        return {"reason": "done"}

    monkeypatch.setattr(training, "run_pipeline", pipeline)
    argv = ["--data-dir", str(tmp_path), "--status-file", str(tmp_path / "s.json"), "--staging-dir",
            str(tmp_path / "st"), "--triggered-by", "test", "--settings", "-"]  # fmt: skip
    assert training.main(argv) == 0
    assert (seen[0].tuning.retrieval_k, seen[0].data_dir) == (9, tmp_path)
