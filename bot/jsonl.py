"""Reading JSONL files that users hand us: every bad line reported by number, nothing half-read."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bot.types import UserError

T = TypeVar("T")


class JsonlFileError(UserError):
    """A JSONL file has bad lines; `.problems` lists them ("line N: why")."""

    def __init__(self, path: Path, problems: list[str], what: str = "nothing was read") -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} problem(s), {what}:\n{shown}{more}")


def read_jsonl(path: Path, parse: Callable[[dict[str, Any]], T], what: str = "nothing was read") -> list[T]:
    """Parse every line with `parse` (which raises ValueError with the reason for a bad record).

    The whole file is validated before anything is returned; any bad line raises JsonlFileError
    listing every bad line, so callers never act on half a file.
    """
    try:
        # Lines end at \n only: str.splitlines() also splits at U+2028, U+2029 and U+0085, which
        # are legal inside a JSON string (a valid file was refused, with wrong line numbers).
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise JsonlFileError(path, ["file not found"], what) from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise JsonlFileError(path, [f"cannot be read as UTF-8 text ({exc})"], what) from None
    items: list[T] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg})")
            continue
        except RecursionError:  # a line nested thousands deep
            problems.append(f"line {number}: nested too deeply to read")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number}: expected a JSON object")
            continue
        try:
            items.append(parse(record))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        raise JsonlFileError(path, problems, what)
    if not items:
        raise JsonlFileError(path, ["the file has no records"], what)
    return items
