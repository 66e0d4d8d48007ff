"""The data directory holds every message and prompt: 0700, its files 0600, whatever the umask of
the shell that started the bot, and what an older version left readable is tightened at start."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from bot.stores.private_dir import make_private
from tests import conftest


def loose(path: Path) -> list[str]:
    """Everything under `path` (itself included) that anyone but its owner may read or enter."""
    found = [path, *path.rglob("*")]
    return [
        f"{p} {stat.filemode(p.lstat().st_mode)}" for p in found if not p.is_symlink() and p.lstat().st_mode & 0o077
    ]


def test_the_cli_creates_the_data_directory_privately_under_a_permissive_umask(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    file = tmp_path / "facts.jsonl"
    file.write_text(json.dumps({"input": "Where is the VPN config?", "output": "On the wiki."}) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "SLACK_", "DISCORD_"))}
    env.update(PYTHONPATH=str(conftest.REPO))
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--data-dir", str(data_dir), "examples", "import", str(file)],
        env=env, capture_output=True, text=True, timeout=300, umask=0o022,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert any(data_dir.rglob("*.sqlite3")), "the example store was written"
    assert loose(data_dir) == []


def test_what_an_older_version_left_readable_is_tightened_but_the_model_cache_is_not(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "chroma" / "segment").mkdir(parents=True)
    (data_dir / "cache" / "models").mkdir(parents=True)
    for path in (
        data_dir / "feedback.sqlite3",
        data_dir / "feedback.sqlite3-wal",
        data_dir / "chroma" / "segment" / "x.bin",
    ):
        path.write_text("private")
        path.chmod(0o644)
    shared = data_dir / "cache" / "models" / "model.gguf"
    shared.write_text("weights")
    shared.chmod(0o644)
    for directory in (data_dir, data_dir / "chroma", data_dir / "chroma" / "segment"):
        directory.chmod(0o755)
    (data_dir / "link").symlink_to("/etc/hostname")

    make_private(data_dir, skip=[data_dir / "cache"])

    assert [p for p in loose(data_dir) if "/cache" not in p] == []
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644, "the model cache keeps its modes (it holds no user data)"
    assert stat.S_IMODE((data_dir / "feedback.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
