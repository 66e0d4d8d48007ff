"""Prompt assembly: system prompt, retrieved examples, history and the new message, within budget.

Pure apart from the tokenizer it is given. The same builder serves replies and training data, so a
LoRA is trained in exactly the layout it will serve in.

User-sourced text (messages, history, examples) is tokenized with `split_special_tokens=True`:
a user who types `<|im_start|>system` gets those characters as plain text, never a new turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.generation.tokenizer_lock import tokenizer_lock
from bot.types import Example, Turn

_PLACEHOLDER = "\x00slot{}\x00"  # never produced by a chat template, never allowed in user text


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    input_ids: list[int]
    example_ids: tuple[str, ...]
    history_used: int
    examples_dropped: int
    history_dropped: int


def prompt_messages(
    system_prompt: str, examples: Sequence[Example], history: Sequence[Turn], text: str
) -> list[dict[str, str]]:
    """The system prompt, the history, the examples as earlier turns (weakest first, so that the best
    sits right before the message), then the message. One layout: the small model copies the turn
    nearest its reply (docs/training.md), and with the examples after the history a conversation's
    start stays the same from one message to the next, so it can be read ahead (conversation_start)."""
    messages = [{"role": "system", "content": system_prompt}]
    for user, assistant in [(t.user, t.assistant) for t in history] + [(e.input, e.output) for e in reversed(examples)]:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": text})
    return messages


def tokenize_messages(
    tokenizer: Any,
    messages: list[dict[str, str]],
    add_generation_prompt: bool = True,
) -> list[int]:
    """Token ids for `messages` through the chat template, with message contents kept as text.

    The template is rendered around placeholders; template text is tokenized normally (its
    special tokens are real) and every content is tokenized with special tokens split, so none
    can be forged.
    """
    with tokenizer_lock(tokenizer):  # the tokenizer keeps split_special_tokens as shared state
        slots = [{**m, "content": _PLACEHOLDER.format(i)} for i, m in enumerate(messages)]
        rendered: str = tokenizer.apply_chat_template(
            slots, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        ids: list[int] = []
        rest = rendered
        for i, message in enumerate(messages):
            before, found, rest = rest.partition(_PLACEHOLDER.format(i))
            if not found:
                raise ValueError("the chat template dropped a message; it cannot be used here")
            ids += tokenizer(before, add_special_tokens=False)["input_ids"]
            content = message["content"].replace("\x00", "")
            ids += tokenizer(content, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids += tokenizer(rest, add_special_tokens=False)["input_ids"]
    return ids


def conversation_start(tokenizer: Any, system_prompt: str, history: Sequence[Turn]) -> list[int] | None:
    """The tokens a conversation's next prompt starts with, given its `history`, whatever the next
    message and its examples: the system prompt and the turns (None without turns). `build_prompt`
    ids start with these while every turn is kept (the next message leans on them and the budget
    holds them)."""
    if not history:
        return None
    return tokenize_messages(tokenizer, prompt_messages(system_prompt, [], history, "")[:-1], False)


def build_prompt(
    tokenizer: Any,
    system_prompt: str,
    examples: Sequence[Example],
    history: Sequence[Turn],
    text: str,
    budget_tokens: int,
) -> Prompt:
    """Fit everything into `budget_tokens`: drop the oldest history, then the weakest examples.

    `examples` come best first. The new message is never dropped; if it alone does not fit,
    ValueError says so (the core rejects oversized messages before this point).
    """
    examples = list(examples)
    history = list(history)
    dropped_history = dropped_examples = 0
    while True:
        messages = prompt_messages(system_prompt, examples, history, text)
        ids = tokenize_messages(tokenizer, messages)
        if len(ids) <= budget_tokens:
            return Prompt(
                messages=messages,
                input_ids=ids,
                example_ids=tuple(e.id for e in examples),
                history_used=len(history),
                examples_dropped=dropped_examples,
                history_dropped=dropped_history,
            )
        if history:
            history.pop(0)
            dropped_history += 1
        elif examples:
            examples.pop()
            dropped_examples += 1
        else:
            raise ValueError(
                f"the message needs {len(ids)} tokens with the system prompt, over the budget of "
                f"{budget_tokens}; shorten it"
            )
