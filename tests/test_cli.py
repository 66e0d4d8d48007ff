"""The command line as people use it: results on stdout for pipes, diagnostics on stderr, JSON for
scripts, quiet by default, `ask` one-shot, `run` stopped by SIGTERM and refusing to start with nothing
to talk to. Each in a process of its own, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MODEL_CACHE, REPO


def bot(data_dir: Path, *args: str, stdin: str | None = "", **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "BOT_DATA_DIR": str(data_dir), "BOT_MODEL_CACHE": str(MODEL_CACHE), **env}
    full_env.pop("SLACK_BOT_TOKEN", None)
    full_env.pop("DISCORD_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=REPO, env=full_env, input=stdin,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_results_go_to_stdout_as_text_or_json_and_third_party_logs_stay_quiet(tmp_path: Path) -> None:
    status = bot(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert "Examples: 0" in status.stdout and "Examples" not in status.stderr
    assert "alembic" not in status.stderr and "Running upgrade" not in status.stderr
    listed = bot(tmp_path, "lora", "list")
    assert "No LoRA versions yet" in listed.stdout
    data = json.loads(bot(tmp_path, "status", "--json").stdout)
    assert data["ok"] and data["data"]["examples"] == 0 and data["data"]["lora_active"] is None
    assert json.loads(bot(tmp_path, "lora", "list", "--json").stdout)["data"] == []
    failed = bot(tmp_path, "lora", "use", "v0042")
    assert failed.returncode == 2 and not failed.stdout and "v0042" in failed.stderr
    assert bot(tmp_path, "feedback", "review").stdout.strip() == "No corrections are waiting for review."
    paged = bot(tmp_path, "feedback", "review", "2")  # the optional page, given
    assert paged.returncode == 0 and "No corrections" in paged.stdout, paged.stderr
    verbose = bot(tmp_path / "fresh", "--verbose", "status")
    assert "Running upgrade" in verbose.stderr  # asked for, the libraries' own logs come back


def test_run_with_no_platform_and_no_terminal_says_what_is_missing(tmp_path: Path) -> None:
    started = time.monotonic()
    result = bot(tmp_path, "run", stdin=None)  # stdin at its end, as in a container: /dev/null
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN" in result.stderr and "DISCORD_TOKEN" in result.stderr
    assert time.monotonic() - started < 60  # before the model loads


@pytest.mark.slow
def test_ask_is_one_shot_unless_a_conversation_is_named(tmp_path: Path) -> None:
    def ask(*extra: str) -> dict:
        result = bot(tmp_path, "ask", "Say hello.", "--json", *extra, BOT_MAX_NEW_TOKENS="4")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    first, second = ask(), ask()
    assert first["prompt_tokens"] == second["prompt_tokens"]  # the first call is no history of the second
    named = ask("--conversation", "mine")
    again = ask("--conversation", "mine")
    assert again["prompt_tokens"] > named["prompt_tokens"]  # a named conversation carries its history


@pytest.mark.slow
def test_sigterm_stops_run_at_once_with_exit_0(tmp_path: Path) -> None:
    env = {**os.environ, "BOT_DATA_DIR": str(tmp_path), "BOT_MODEL_CACHE": str(MODEL_CACHE)}
    process = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=REPO, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("Hello\n")  # an open pipe: the terminal chat waits on it
    process.stdin.flush()
    deadline = time.monotonic() + 300
    seen = ""
    while "lora base" not in seen and time.monotonic() < deadline:  # the reply's closing line
        seen += process.stdout.readline()
    assert "bot> " in seen, seen
    stopped = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert time.monotonic() - stopped < 2.0


def test_the_training_process_starts_under_its_name() -> None:
    """`python -m bot.finetune`, the one entry of the training process (the bot starts it; operators
    run `bot retrain` or `bot trainer`): its own argument parser."""
    run = subprocess.run([sys.executable, "-m", "bot.finetune", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "--staging-dir" in run.stdout and "python -m bot.finetune" in run.stdout
