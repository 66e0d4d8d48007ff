"""Decoding rules that keep greedy replies from looping, without stopping them from quoting the prompt.

transformers' own `no_repeat_ngram_size` and `repetition_penalty` look at the whole sequence, the
prompt included, so they would also forbid copying a verified answer's facts from the examples in
the prompt: the very thing retrieval is for. These look at the reply only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.generation.tokenizer_lock import tokenizer_lock

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


@dataclass(frozen=True)
class ReplyRules:
    """The settings' logit rules for one reply: the answer bias, then the reply-only repetition
    rules. One implementation for every engine: `apply` works on a row of logits as a torch tensor
    (transformers) or a numpy array (llama.cpp)."""

    prompt_tokens: int
    favored: tuple[int, ...] = ()  # the best verified answer's tokens, raised by `bias`
    bias: float = 0.0
    ngram: int = 0
    penalty: float = 1.0

    @classmethod
    def for_reply(cls, settings: Settings, prompt_tokens: int, favored: Sequence[int]) -> ReplyRules | None:
        """The rules the settings ask for on this reply; None when there are none."""
        t = settings.tuning
        rules = cls(prompt_tokens, tuple(sorted(set(favored))) if t.answer_bias else (),
                    t.answer_bias, t.no_repeat_ngram, t.repetition_penalty)  # fmt: skip
        return rules if rules.favored or rules.ngram or rules.penalty != 1.0 else None

    def apply(self, row: Any, reply: Sequence[int]) -> None:
        """Adjust one row of next-token logits in place; `reply` is what the reply has so far."""
        if self.favored:
            row[list(self.favored)] += self.bias
        if self.penalty != 1.0 and len(reply):
            used = row[list(reply)]
            # As transformers' penalty: a positive logit divided, a negative one multiplied.
            row[list(reply)] = used * ((used < 0) * (self.penalty - 1 / self.penalty) + 1 / self.penalty)
        banned = banned_next_tokens(list(reply), self.ngram)
        if banned:
            row[sorted(banned)] = -float("inf")

    def processor(self) -> Any:
        """The rules as a transformers LogitsProcessor (the reply starts after the prompt)."""
        from transformers import LogitsProcessor

        rules = self

        class ReplyRulesProcessor(LogitsProcessor):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                scores = scores.clone()
                for row in range(scores.shape[0]):
                    rules.apply(scores[row], input_ids[row, rules.prompt_tokens :].tolist())
                return scores

        return ReplyRulesProcessor()


def favored_tokens(tokenizer: Any, answer: str) -> list[int]:
    """A verified answer's token ids, as they come at a reply's start and inside a sentence."""
    ids: set[int] = set()
    with tokenizer_lock(tokenizer):
        for text in (answer, " " + answer):
            ids.update(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
    return sorted(ids)


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The token ids that end a reply: end of text and the chat template's end-of-turn markers."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


def banned_next_tokens(reply: list[int], size: int) -> set[int]:
    """Tokens that would repeat an n-gram (n = size) already in `reply`."""
    if size <= 0 or len(reply) < size:
        return set()
    prefix = tuple(reply[len(reply) - size + 1 :])
    starts = range(len(reply) - size + 1)
    return {reply[i + size - 1] for i in starts if tuple(reply[i : i + size - 1]) == prefix}
