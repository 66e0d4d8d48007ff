"""Question/answer evaluation: ask each question, count a hit when the reply contains an expected string.

One function serves `bot eval FILE`, the training gate's regression check and the benchmark, so that
every figure in the project is computed the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from bot.types import UserError

AnswerFn = Callable[[str], str]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EvalItem:
    question: str
    expect_any: tuple[str, ...]


class Miss(TypedDict):
    question: str
    reply: str
    expected: list[str]


@dataclass(frozen=True)
class EvalReport:
    hits: int
    total: int
    misses: list[Miss] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "accuracy": round(self.accuracy, 4),
            "hits": self.hits,
            "total": self.total,
            "misses": list(self.misses),
        }


def is_hit(reply: str, expect_any: tuple[str, ...]) -> bool:
    lowered = reply.lower()
    return any(expected.lower() in lowered for expected in expect_any)


def load_eval_file(path: Path) -> list[EvalItem]:
    """Parse a JSONL file of {"question", "expect_any"} rows; a bad line is a UserError naming it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    items: list[EvalItem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {number}: not valid JSON ({exc.msg})") from None
        question = row.get("question") if isinstance(row, dict) else None
        expect = row.get("expect_any") if isinstance(row, dict) else None
        if isinstance(expect, str):
            expect = [expect]
        if not isinstance(question, str) or not question.strip():
            raise UserError(f'{path} line {number}: needs a non-empty string "question"')
        if not isinstance(expect, list) or not expect or not all(isinstance(e, str) and e.strip() for e in expect):
            raise UserError(f'{path} line {number}: "expect_any" must be a non-empty list of non-empty strings')
        items.append(EvalItem(question.strip(), tuple(expect)))
    if not items:
        raise UserError(f"{path}: no questions in the file")
    return items


def evaluate(answer_fn: AnswerFn, items: list[EvalItem], progress: Progress | None = None) -> EvalReport:
    hits = 0
    misses: list[Miss] = []
    for done, item in enumerate(items, start=1):
        reply = answer_fn(item.question)
        if is_hit(reply, item.expect_any):
            hits += 1
        else:
            misses.append(Miss(question=item.question, reply=reply, expected=list(item.expect_any)))
        if progress:
            progress(done, len(items))
    return EvalReport(hits, len(items), misses)


def evaluate_file(answer_fn: AnswerFn, path: Path, progress: Progress | None = None) -> EvalReport:
    """Ask every question of a JSONL file (validated whole before the first question)."""
    return evaluate(answer_fn, load_eval_file(path), progress)
