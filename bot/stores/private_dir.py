"""The data directory is private to the user the bot runs as: it holds every message, every prompt
and every example. The bot's processes create files with a private umask (whatever the shell's), and
the bot tightens what an older version or another tool left readable when it starts."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

PRIVATE_UMASK = 0o077  # new files 0600, new directories 0700


def create_files_privately() -> None:
    """For this process and its children (the trainer): called first by each entry point, never by
    a library function (the umask is process-wide)."""
    os.umask(PRIVATE_UMASK)


def make_private(data_dir: Path, skip: Sequence[Path] = ()) -> None:
    """`data_dir` 0700 and everything under it owner-only; `skip` (the model cache: shared, no user
    data) keeps its modes. Links are left alone: they may point outside."""
    data_dir.mkdir(parents=True, exist_ok=True)
    skipped = {path.resolve() for path in skip}
    _tighten(data_dir)
    for root, dirs, files in os.walk(data_dir):
        here = Path(root)
        dirs[:] = [name for name in dirs if (here / name).resolve() not in skipped]
        for name in [*dirs, *files]:
            _tighten(here / name)


def _tighten(path: Path) -> None:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode) or not mode & 0o077:
        return
    path.chmod(stat.S_IMODE(mode) & 0o700)
