"""What retrieval looks up for a message and which turns of its history stay in the prompt: a
follow-up is looked up with the question before it, and a message that stands alone keeps only the
turns related to it. The examples themselves are stored and retrieved by bot/stores/examples.py."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.embedder import Embedder
from bot.types import Turn

# Before a message that does not lean on them, only turns this similar to it stay in the prompt
# (related_turns): the examples' similarity floor, by the same embedder.
HISTORY_SIMILARITY = 0.35

# A message that leans on the one before it: it starts by continuing it ("and on Sundays?", "what
# about DVDs?") or points back with a pronoun ("is it free?", "what is her email?"). English only,
# as the default model is.
_CONTINUES = re.compile(r"^\s*(and|or|but|also|so|then|what about|how about)\b", re.I)
_POINTS_BACK = re.compile(
    r"\b(it|its|they|them|their|he|him|his|she|her|that|this|those|these|there|same|we|earlier|previous|again"
    r"|just|said|told|mentioned|remember|summari[sz]e)\b",
    re.I,
)


def leans_on_history(text: str) -> bool:
    """Whether a message reads as a follow-up of the one before it: it continues it, points back, or
    is too short to stand alone ("Why?", "At what time?")."""
    return bool(_CONTINUES.search(text) or _POINTS_BACK.search(text) or len(text.split()) <= 3)


def retrieval_query(text: str, previous_question: str | None) -> str:
    """What retrieval looks up for a message: the message itself, or, when it reads as a follow-up of
    the previous question, both together. "And on Sundays?" alone finds nothing about opening hours
    (top match story time, 0.29); with "What are the opening hours?" before it, the hours (0.69). A
    message that stands alone ("Tell me a joke") is looked up alone: with the previous question it
    would retrieve that topic's answer, and the model would repeat it."""
    if previous_question and leans_on_history(text):
        return f"{previous_question}\n{text}"
    return text


def related_turns(
    embedder: Embedder, text: str, history: Sequence[Turn], floor: float = HISTORY_SIMILARITY
) -> list[Turn]:
    """The turns of `history` whose exchange is at least `floor` similar to `text` (-1 keeps all).

    In a conversation the small model copies the turn nearest its reply: one unrelated turn of
    history before a general question made 16 of 56 replies repeats (docs/training.md). "What is my
    name?" after "My name is Ada." keeps that turn; "Tell me a joke" after the wifi password drops it."""
    if not history or floor <= -1:
        return list(history)
    vectors = embedder.embed([text, *(f"{t.user}\n{t.assistant}" for t in history)])
    return [turn for turn, vector in zip(history, vectors[1:], strict=True) if float(vector @ vectors[0]) >= floor]
