"""Decoding rules that keep greedy replies from looping, without stopping them from quoting the prompt.

transformers' own `no_repeat_ngram_size` and `repetition_penalty` look at the whole sequence, the
prompt included, so they would also forbid copying a verified answer's facts from the examples in
the prompt: the very thing retrieval is for. These look at the reply only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Settings

# A reply that starts a new "Q:" line is writing the examples' layout, not answering (prompt.py).
STOP_STRINGS = ("\nQ:",)
_ANSWER_LABEL = re.compile(r"^\s*A:\s*")


def clean_reply(text: str) -> str:
    """The reply without the examples' layout leaking into it: no leading "A:", nothing from a new
    "Q:" on (a stop string ends generation there, but its tokens were already produced)."""
    for stop in STOP_STRINGS:
        text = text.split(stop, 1)[0]
    return _ANSWER_LABEL.sub("", text, count=1).strip()


def reply_rules(settings: Settings, prompt_tokens: int, favored: Sequence[int]) -> list[Any]:
    """The transformers LogitsProcessors the settings ask for on this reply (none: an empty list)."""
    rules = []
    if settings.answer_bias and favored:
        rules.append(answer_bias(favored, settings.answer_bias))
    if settings.no_repeat_ngram or settings.repetition_penalty != 1.0:
        rules.append(reply_repetition_rules(prompt_tokens, settings.no_repeat_ngram, settings.repetition_penalty))
    return rules


def favored_tokens(tokenizer: Any, answer: str) -> list[int]:
    """A verified answer's token ids, as they come at a reply's start and inside a sentence."""
    ids: set[int] = set()
    for text in (answer, " " + answer):
        ids.update(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
    return sorted(ids)


def answer_bias(favored: Sequence[int], strength: float) -> Any:
    """A LogitsProcessor that adds `strength` to the logits of the best verified answer's tokens.

    The small default model often has the right example in its prompt and still echoes the question
    or garbles a number (docs/training.md). Nudging it towards the verified answer's tokens is a
    cheap cousin of context-aware decoding: the model still writes the reply, token by token, and a
    token that does not fit stays unlikely.
    """
    import torch
    from transformers import LogitsProcessor

    index = torch.tensor(sorted(set(favored)), dtype=torch.long)

    class AnswerBias(LogitsProcessor):  # type: ignore[misc]
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            scores = scores.clone()
            scores[:, index.to(scores.device)] += strength
            return scores

    return AnswerBias()


def reply_repetition_rules(prompt_tokens: int, ngram: int, penalty: float) -> Any:
    """A transformers LogitsProcessor for the reply only: tokens that would complete an n-gram the
    reply already contains are banned (`ngram` 0: off), and tokens the reply already used are made
    less likely by `penalty` (1.0: off), as transformers' repetition penalty does."""
    import torch
    from transformers import LogitsProcessor

    class ReplyRepetitionRules(LogitsProcessor):  # type: ignore[misc]
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            reply = input_ids[:, prompt_tokens:]
            if penalty != 1.0 and reply.shape[1]:
                used = torch.gather(scores, 1, reply)
                used = torch.where(used < 0, used * penalty, used / penalty)
                scores = scores.scatter(1, reply, used)
            for row in range(reply.shape[0]):
                for token in banned_next_tokens(reply[row].tolist(), ngram):
                    scores[row, token] = -float("inf")
            return scores

    return ReplyRepetitionRules()


def banned_next_tokens(reply: list[int], size: int) -> set[int]:
    """Tokens that would repeat an n-gram (n = size) already in `reply`."""
    if size <= 0 or len(reply) < size:
        return set()
    prefix = tuple(reply[len(reply) - size + 1 :])
    starts = range(len(reply) - size + 1)
    return {reply[i + size - 1] for i in starts if tuple(reply[i : i + size - 1]) == prefix}
