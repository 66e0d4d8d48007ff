"""Question/answer evaluation: ask each question, count a hit when the reply contains an expected string.

One function serves `bot eval FILE`, the training gate's regression check and the benchmark, so that
every figure in the project is computed the same way.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

from bot.jsonl import read_jsonl
from bot.types import ALL_SCOPES, ConversationKey, Message, Reply, UserError

# (conversation id, question) -> reply. The evaluator chooses the ids: one per question asked
# alone, one for a whole conversation; a caller keeps each id's history apart.
AnswerFn = Callable[[str, str], str]
Progress = Callable[[int, int], None]
ALONE = None  # `reset_every` for "each question alone" (a follow-up still rides with its opener)
CONVERSATION_SEED = 0  # the order `bot eval --conversation` and the bench ask a file's questions in


@dataclass(frozen=True)
class EvalItem:
    question: str
    expect_any: tuple[str, ...]
    followup: bool = False  # asked in the previous question's conversation: it needs that history


class Miss(TypedDict):
    question: str
    reply: str
    expected: list[str]


@dataclass(frozen=True)
class EvalReport:
    hits: int
    total: int
    misses: list[Miss] = field(default_factory=list)
    repeats: int = 0  # replies identical to the reply before them in the same conversation
    followup_hits: int = 0
    followup_total: int = 0

    @property
    def accuracy(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "accuracy": round(self.accuracy, 4),
            "hits": self.hits,
            "total": self.total,
            "repeats": self.repeats,
            "followup_hits": self.followup_hits,
            "followup_total": self.followup_total,
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
    followup = row.get("followup", False)
    if not isinstance(followup, bool):
        raise ValueError('"followup" must be true or false')
    return EvalItem(question.strip(), tuple(expect), followup)


def load_eval_file(path: Path) -> list[EvalItem]:
    """Parse a JSONL file of {"question", "expect_any", "followup"?} rows; bad lines raise a
    UserError naming them. A follow-up needs a question before it to follow."""
    items = read_jsonl(path, _parse_item)
    if items and items[0].followup:
        raise UserError(f"{path}: the first question is a follow-up of nothing; nothing was asked")
    return items


def _same_reply(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def shuffled(items: list[EvalItem], seed: int) -> list[EvalItem]:
    """The items in a seeded order, each follow-up still right after its opener. Eval files list a
    fact's paraphrases together; asked in that order in one conversation, the right answer to a
    question is often the reply before it, which hides a bot that only repeats itself."""
    groups: list[list[EvalItem]] = []
    for item in items:
        if item.followup and groups:
            groups[-1].append(item)
        else:
            groups.append([item])
    random.Random(seed).shuffle(groups)
    return [item for group in groups for item in group]


def evaluate(
    answer_fn: AnswerFn, items: list[EvalItem], progress: Progress | None = None, reset_every: int | None = ALONE
) -> EvalReport:
    """Ask every item in order; `reset_every`: ALONE (each question in a conversation of its own, a
    follow-up in its opener's), 0 (all in one conversation, as a user chats) or N (a new
    conversation every N questions, never between a follow-up and its opener)."""
    hits = repeats = followup_hits = followups = 0
    misses: list[Miss] = []
    conversation, asked_in_it, previous = 0, 0, None
    run = uuid.uuid4().hex[:8]  # two evaluations through one AnswerFn never share a conversation
    for done, item in enumerate(items, start=1):
        fresh = (reset_every is ALONE or (reset_every and asked_in_it >= reset_every)) and not item.followup
        if fresh and done > 1:
            conversation, asked_in_it, previous = conversation + 1, 0, None
        reply = answer_fn(f"{run}-{conversation}", item.question)
        asked_in_it += 1
        repeats += previous is not None and _same_reply(reply, previous)
        previous = reply
        hit = is_hit(reply, item.expect_any)
        hits += hit
        followups += item.followup
        followup_hits += hit and item.followup
        if not hit:
            misses.append(Miss(question=item.question, reply=reply, expected=list(item.expect_any)))
        if progress:
            progress(done, len(items))
    return EvalReport(hits, len(items), misses, repeats, followup_hits, followups)


def evaluate_file(
    answer_fn: AnswerFn,
    path: Path,
    progress: Progress | None = None,
    reset_every: int | None = ALONE,
    order_seed: int | None = None,
) -> EvalReport:
    """Ask every question of a JSONL file (validated whole before the first question), in the file's
    order or, with `order_seed`, `shuffled`."""
    items = load_eval_file(path)
    return evaluate(answer_fn, items if order_seed is None else shuffled(items, order_seed), progress, reset_every)


class _Answers(Protocol):
    def answer(self, message: Message) -> Reply: ...


def core_answerer(core: _Answers, label: str, on_reply: Callable[[str, Reply], None] | None = None) -> AnswerFn:
    """An AnswerFn on the bot's own serving path (a Core): each conversation id its own conversation,
    so history rides along exactly as it does in a chat. Every scope's examples are seen, as training
    sees them. `on_reply(question, reply)` sees each reply (its exchange id, LoRA, examples)."""

    def answer(conversation: str, question: str) -> str:
        key = ConversationKey("eval", label, conversation)
        reply = core.answer(Message(key, "eval", question, scope=ALL_SCOPES))
        if on_reply is not None:
            on_reply(question, reply)
        return reply.text

    return answer


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
