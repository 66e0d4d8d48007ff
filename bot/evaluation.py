"""Question/answer evaluation: ask each question, count a hit when the reply contains an expected string.

One function serves `bot eval FILE`, the training gate's regression check and the benchmark, so that
every figure in the project is computed the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from bot.jsonl import read_jsonl

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


def _parse_item(row: dict[str, Any]) -> EvalItem:
    question, expect = row.get("question"), row.get("expect_any")
    if isinstance(expect, str):
        expect = [expect]
    if not isinstance(question, str) or not question.strip():
        raise ValueError('needs a non-empty string "question"')
    if not isinstance(expect, list) or not expect or not all(isinstance(e, str) and e.strip() for e in expect):
        raise ValueError('"expect_any" must be a non-empty list of non-empty strings')
    return EvalItem(question.strip(), tuple(expect))


def load_eval_file(path: Path) -> list[EvalItem]:
    """Parse a JSONL file of {"question", "expect_any"} rows; bad lines raise a UserError naming them."""
    return read_jsonl(path, _parse_item)


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


# Words that carry no fact: left out of the held-out metric so that "The ... is ..." scores nothing.
# fmt: off
_STOPWORDS = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "can", "de", "for", "from", "has", "have", "in", "is",
        "it", "its", "of", "on", "or", "our", "the", "their", "then", "there", "this", "to", "we", "with", "you",
        "your",
    }
)
# fmt: on


def key_tokens(text: str) -> set[str]:
    """Lower-cased words and numbers that carry the facts of an answer."""
    return {w for w in re.findall(r"[a-z0-9][a-z0-9@.%>-]*[a-z0-9%]|[a-z0-9]", text.lower()) if w not in _STOPWORDS}


def key_token_recall(reply: str, reference: str) -> float:
    """Share of the reference answer's key tokens found in the reply.

    Held-out references are free text, not curated expect_any lists: recall of their content words
    rewards stating the facts (numbers, names, menu paths) and ignores phrasing, which is what the
    gate should care about. A reply that copies the reference scores 1; a wrong fact loses its tokens.
    """
    wanted = key_tokens(reference)
    if not wanted:
        return 1.0
    return len(wanted & key_tokens(reply)) / len(wanted)
