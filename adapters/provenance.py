"""Where a reply came from, as users see it: the verified answers it was written with and the LoRA
version that wrote it (the exchange records both). Slack shows it as the stream's steps or a
context line, Discord as one line of small text under the answer."""

from __future__ import annotations

from dataclasses import dataclass

from bot.types import Example, Looked, Reply

QUOTE_CHARS = 60  # a verified answer is named by its question, shortened
# How each source of a verified answer reads.
SOURCE_NAMES = {"taught": "taught", "correction": "a correction", "import": "imported", "vote": "voted 👍"}


@dataclass(frozen=True)
class Provenance:
    examples: tuple[Example, ...]  # the verified answers in the reply's prompt, best first
    lora_version: str | None  # None: the base model wrote it

    @classmethod
    def of(cls, looked: Looked | None, reply: Reply) -> Provenance:
        """The examples in the reply's prompt, and the version that wrote the reply."""
        return cls(looked.examples if looked is not None else (), reply.lora_version)

    @property
    def worth_showing(self) -> bool:
        """Whether a line under the reply says anything: not for the base model with no verified answer."""
        return bool(self.examples or self.lora_version)

    @property
    def model(self) -> str:
        return f"LoRA {self.lora_version}" if self.lora_version else "the base model"

    def looked_up(self) -> str:
        """What the lookup found: "2 verified answers" or "no verified answer matched"."""
        n = len(self.examples)
        return f"{n} verified answer{'s' if n != 1 else ''}" if n else "no verified answer matched"

    def named(self) -> list[str]:
        """Each verified answer by its question and source: '“How do I reset…” (taught)'."""
        return [f"“{_short(e.input)}” ({SOURCE_NAMES.get(e.source, e.source)})" for e in self.examples]

    def line(self) -> str:
        """One line: 'From “How do I reset…” (taught) · LoRA v0003'."""
        used = f"From {', '.join(self.named())}" if self.examples else "No verified answer matched"
        return f"{used} · {self.model}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1].rstrip() + "…"
