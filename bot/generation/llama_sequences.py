"""What the llama.cpp engine keeps per reply slot: the reply being written (its tokens, its text)
and, once the slot is free again, the prompt whose KV cache it still holds.

A conversation's next prompt starts as its last one did (the system prompt, the earlier turns), so a
new reply takes the free slot holding the longest common start and reads only the rest, in whole
aligned chunks (bot/generation/prompt_reuse.py), so a reply is token for token the same whether its
prompt's start was held or read again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.generation.decoding import ReplyRules
from bot.generation.prompt_reuse import reusable
from bot.generation.tokenizer_lock import tokenizer_lock


class TextStream:
    """Token ids in, new text out: decodes the whole reply each time (so that multi-byte characters
    split over tokens come out whole) and hands on only what is new."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.text = ""

    def push(self, token: int) -> str:
        self.tokens.append(token)
        with tokenizer_lock(self.tokenizer):
            text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half a character: wait for the rest
            return ""
        new, self.text = text[len(self.text) :], text
        return new


@dataclass(eq=False)
class SlotReply:
    seq_id: int
    prompt: list[int]
    group: object  # the LoRA the prompt is read with (its KV depends on it)
    pending: list[int]  # tokens to feed at the next step: the prompt's unread part, then each new token
    max_new_tokens: int
    rules: ReplyRules | None
    on_text: Callable[[str], None]
    text: TextStream
    position: int = 0
    reply: list[int] = field(default_factory=list)

    @property
    def reading_prompt(self) -> bool:
        return not self.reply


class HeldPrompts:
    """The free slots, each with the prompt (and its LoRA) whose KV it holds."""

    def __init__(self, slots: int) -> None:
        self._free: dict[int, tuple[object, list[int]]] = {slot: (None, []) for slot in range(slots)}

    def take(self, group: object, prompt: Sequence[int]) -> tuple[int, int]:
        """A free slot for a reply read with `group`: (its id, how many prompt tokens it holds already)."""
        if not self._free:
            raise RuntimeError("no free slot")

        def kept(slot: int) -> int:
            held_group, held = self._free[slot]
            return reusable(held, prompt) if held_group == group else 0

        slot = max(self._free, key=lambda s: (kept(s), -s))  # the lowest id on a tie: stable runs
        keep = kept(slot)
        del self._free[slot]
        return slot, keep

    def give_back(self, slot: int, group: object, prompt: list[int]) -> None:
        self._free[slot] = (group, prompt)

    def forget(self, group: object) -> None:
        """The LoRA `group` is gone: nothing read with it can be reused."""
        for slot, (held_group, _) in list(self._free.items()):
            if held_group == group:
                self._free[slot] = (None, [])

    def __len__(self) -> int:
        return len(self._free)
