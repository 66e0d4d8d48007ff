"""Prompt assembly: system prompt, retrieved examples, history and the new message, within budget.

Pure apart from the tokenizer it is given. The same builder serves replies and training data, so a
LoRA is trained in exactly the layout it will serve in.

User-sourced text (messages, history, examples) is tokenized with `split_special_tokens=True`:
a user who types `<|im_start|>system` gets those characters as plain text, never a new turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.generation.tokenizer_lock import tokenizer_lock
from bot.types import Example

Layout = Literal["system", "turns", "nearest", "inline"]
_PLACEHOLDER = "\x00slot{}\x00"  # never produced by a chat template, never allowed in user text


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    input_ids: list[int]
    example_ids: tuple[str, ...]
    history_used: int
    examples_dropped: int
    history_dropped: int


def examples_block(examples: Sequence[Example]) -> str:
    """The examples as text for the system prompt: the best one first, marked as verified."""
    lines = ["Verified answers from this team (use their facts when they fit the question):"]
    for example in examples:
        lines.append(f"Q: {example.input}\nA: {example.output}")
    return "\n\n".join(lines)


def inline_question(examples: Sequence[Example], text: str) -> str:
    """The question with the verified answers it retrieved, in one user turn."""
    return f"{examples_block(examples)}\n\nQuestion: {text}"


def layout_messages(
    system_prompt: str,
    examples: Sequence[Example],
    history: Sequence[Turn],
    text: str,
    layout: Layout,
) -> list[dict[str, str]]:
    system = system_prompt
    messages: list[dict[str, str]] = []
    if examples and layout == "system":
        system = f"{system_prompt}\n\n{examples_block(examples)}"
    messages.append({"role": "system", "content": system})
    # Weakest first so that the strongest example sits nearest the question.
    example_turns = [
        turn
        for example in reversed(examples)
        for turn in ({"role": "user", "content": example.input}, {"role": "assistant", "content": example.output})
    ]
    history_turns = [
        turn
        for past in history
        for turn in ({"role": "user", "content": past.user}, {"role": "assistant", "content": past.assistant})
    ]
    if layout == "turns":
        messages += example_turns + history_turns
    elif layout == "nearest":
        messages += history_turns + example_turns
    else:
        messages += history_turns
    if layout == "inline" and examples:
        text = inline_question(examples, text)
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


def conversation_start(tokenizer: Any, system_prompt: str, history: Sequence[Turn], layout: Layout) -> list[int] | None:
    """The tokens a conversation's next prompt starts with, given its `history`, whatever the next
    message and its examples: the system prompt and the turns, in layouts that put the examples after
    them (None in those that put them first). `build_prompt` ids start with these while every turn is
    kept (the next message leans on them and the budget holds them)."""
    if layout not in ("nearest", "inline") or not history:
        return None
    return tokenize_messages(tokenizer, layout_messages(system_prompt, [], history, "", layout)[:-1], False)


def build_prompt(
    tokenizer: Any,
    system_prompt: str,
    examples: Sequence[Example],
    history: Sequence[Turn],
    text: str,
    budget_tokens: int,
    layout: Layout = "nearest",
) -> Prompt:
    """Fit everything into `budget_tokens`: drop the oldest history, then the weakest examples.

    `examples` come best first. The new message is never dropped; if it alone does not fit,
    ValueError says so (the core rejects oversized messages before this point).
    """
    examples = list(examples)
    history = list(history)
    dropped_history = dropped_examples = 0
    while True:
        messages = layout_messages(system_prompt, examples, history, text, layout)
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
