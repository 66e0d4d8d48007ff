"""Command parsing and permissions: one command set for every chat platform and the CLI."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from bot.types import UserError

# name -> (admin only, usage, help)
COMMANDS: dict[str, tuple[bool, str, str]] = {
    "help": (False, "help", "show this help"),
    "reset": (False, "reset", "forget this conversation's history"),
    "status": (True, "status", "model, LoRA, examples, feedback counts and training progress"),
    "retrain": (True, "retrain", "train a new LoRA on the feedback in the background"),
    "lora list": (True, "lora list", "list LoRA versions"),
    "lora use": (True, "lora use VERSION", "serve a LoRA version (also promotes a candidate)"),
    "lora rollback": (True, "lora rollback", "go back to the previous LoRA"),
    "teach": (True, "teach QUESTION => ANSWER", "add a verified answer at once"),
    "feedback review": (True, "feedback review", "list corrections waiting for review"),
    "feedback accept": (True, "feedback accept ID", "accept a pending correction"),
    "feedback reject": (True, "feedback reject ID", "reject a pending correction"),
    "feedback export": (True, "feedback export FILE", "write the feedback as JSONL for TRL"),
}


@dataclass(frozen=True)
class Command:
    name: str
    args: str
    admin_only: bool


def parse_command(text: str) -> Command:
    """Split "lora use v3" into Command("lora use", "v3"). Unknown commands raise UserError."""
    words = text.strip().lstrip("/").split(maxsplit=2)
    if not words:
        raise UserError("empty command; try `help`")
    words[0] = words[0].lower()
    for size in (2, 1):
        if len(words) >= size:
            name = " ".join(w.lower() for w in words[:size])
            if name in COMMANDS:
                rest = text.strip().lstrip("/").split(maxsplit=size)
                args = rest[size] if len(rest) > size else ""
                return Command(name, args.strip(), COMMANDS[name][0])
    known = ", ".join(sorted({n.split()[0] for n in COMMANDS}))
    raise UserError(f"unknown command {text.strip()!r}; known commands: {known}")


def parse_teach(args: str) -> tuple[str, str]:
    question, sep, answer = args.partition("=>")
    if not sep or not question.strip() or not answer.strip():
        raise UserError("teach needs `QUESTION => ANSWER`, e.g. teach How do I reset my password? => Open Settings")
    return question.strip(), answer.strip()


def single_arg(args: str, what: str) -> str:
    try:
        parts = shlex.split(args) if args else []
    except ValueError as exc:  # an unbalanced quote, e.g. `feedback accept "abc`
        raise UserError(f"cannot read {args!r} as one {what} ({exc}): close the quote or leave quotes out") from None
    if len(parts) != 1:
        raise UserError(f"expected one {what}")
    return parts[0]


def help_text(is_admin: bool) -> str:
    lines = ["Commands:"]
    for admin_only, usage, text in COMMANDS.values():
        if is_admin or not admin_only:
            lines.append(f"  {usage:<28} {text}{'  (admins)' if admin_only else ''}")
    lines.append("React with 👍 or 👎 to a reply to vote on it; reply `correct: <better answer>` to correct it.")
    return "\n".join(lines)
