"""Replay rows answered in the base model's own words, against forgetting.

Replay rows (general questions mixed into every retrain) keep the LoRA from forgetting general
answers. With written answers as targets ("The capital of Italy is Rome.") the LoRA also learns
their wording and restates questions, and the regression gate measured the loss (docs/training.md).
When the target is what the base model itself answers to the same prompt, a replay row pulls the
LoRA towards the base model's behaviour and teaches nothing else: self-distillation. A base answer
is used only when it states every fact of the written answer that the question does not already
hold (its key tokens, bot.evaluation) and ended by itself; otherwise the written answer stays,
so replay never teaches a wrong fact. The base model's replies are kept between runs by
bot/finetune/base_replies.py, so only the first retrain pays for generating them.
"""

from __future__ import annotations

from bot.config import Settings
from bot.evaluation import key_tokens
from bot.finetune.base_replies import BaseReplies
from bot.generation.decoding import clean_reply
from bot.training.dataset import Row, prompt_ids

MAX_NEW_TOKENS = 96  # general answers are a sentence or two; a longer one is not kept anyway


def states_the_facts(answer: str, reference: str, question: str) -> bool:
    """Every key token of the reference that the question does not give is in the answer."""
    wanted = key_tokens(reference) - key_tokens(question) or key_tokens(reference)
    return wanted <= key_tokens(answer)


class SelfAnswers:
    """Callable on a replay row: the base model's answer to its prompt, or the written answer."""

    def __init__(self, base: BaseReplies, settings: Settings) -> None:
        self.base = base
        self.settings = settings
        self.kept = self.asked = 0

    def __call__(self, row: Row) -> str:
        self.asked += 1
        s = self.settings
        question = row.question
        ids = prompt_ids(self.base.tokenizer, row, s, s.context_tokens - s.max_new_tokens)  # as served
        pieces: list[str] = []
        limit = min(MAX_NEW_TOKENS, s.max_new_tokens)
        produced = self.base.generate(ids, limit, pieces.append)
        answer = clean_reply("".join(pieces))
        if produced >= limit or not answer or not states_the_facts(answer, row.completion, question):
            return row.completion  # ran on, said nothing, or missed a fact: the written answer
        self.kept += 1
        return answer
