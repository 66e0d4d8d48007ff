"""Every command, declared once: its name, typed arguments, who may run it, help, and handler.

Everything else is derived from `COMMANDS`: the help text, the text parser (Slack's
`/assistant <command>`, the terminal's `/command`, any platform that sends commands as text),
Discord's application commands (adapters/discord_bot/client.py), and the CLI's `bot lora ...` and
`bot feedback ...` commands (bot/cli/manage.py). Adding a command is one `Command(...)` entry and one
handler here. Admin rights are checked in `run`, whatever a platform already hides.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot import status
from bot.types import LOCAL_PLATFORMS, CommandResult, ConversationKey, Incoming, UserError

if TYPE_CHECKING:
    from bot.feedback_rules import FeedbackRules
    from bot.stores.lora_registry import LoraRegistry
    from bot.training.runner import TrainingRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arg:
    name: str
    help: str
    type: type = str  # what a typed platform (Discord) offers as the option's type
    rest: bool = False  # free text to the end of the line (or to the command's separator)
    optional: bool = False  # may be left out (last arguments only); the handler's default applies


@dataclass(frozen=True)
class Caller:
    """Who runs a command, and where: admin rights were decided by the core."""

    platform: str
    user_id: str
    conversation: ConversationKey
    is_admin: bool

    @property
    def who(self) -> str:
        return f"{self.platform}:{self.user_id}"


Handler = Callable[..., CommandResult]  # handler(core, caller, **arguments)


@dataclass(frozen=True)
class Command:
    name: str  # one or two words: "lora use"
    help: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    admin: bool = True
    separator: str = ""  # between free-text arguments in text form: `teach QUESTION => ANSWER`
    # Offered by the `bot` CLI too: commands that need no conversation and write no example
    # (the bot process owns the example store; the CLI may run beside it).
    cli: bool = True

    @property
    def usage(self) -> str:
        names = [f"[{a.name.upper()}]" if a.optional else a.name.upper() for a in self.args]
        joiner = f" {self.separator} " if self.separator else " "
        return " ".join([self.name, joiner.join(names)]) if names else self.name


@dataclass(frozen=True)
class Call:
    """A parsed command line: the command and its arguments, converted to their types."""

    command: Command
    args: dict[str, Any]


class CommandContext(status.StatusContext, Protocol):
    """What the commands use of the core (bot/core.py is one): what `status` reports on, and more.
    Declared here so that this module never imports the core, which imports it."""

    rules: FeedbackRules

    def reset(self, conversation: ConversationKey) -> None: ...

    def after_swap(self, text: str) -> str: ...


# handlers --------------------------------------------------------------------------------------


def _help(core: CommandContext, caller: Caller) -> CommandResult:
    return CommandResult(help_text(caller.is_admin))


def _reset(core: CommandContext, caller: Caller) -> CommandResult:
    core.reset(caller.conversation)
    return CommandResult("Done: I forgot this conversation.")


def _status(core: CommandContext, caller: Caller) -> CommandResult:
    return CommandResult(status.status_text(core), data=status.status_data(core))


def _retrain(core: CommandContext, caller: Caller) -> CommandResult:
    started = _trainer(core).start(triggered_by=caller.who)
    return CommandResult(started.message, ephemeral=False, ok=started.ok, followup=started.followup)


def _teach(core: CommandContext, caller: Caller, question: str, answer: str) -> CommandResult:
    # `teach Q1 | Q2 => A`: each phrasing is a key retrieval can find the answer by, and a training row.
    phrasings = list(dict.fromkeys(q.strip() for q in question.split("|") if q.strip()))
    if not phrasings:
        raise UserError("`teach` needs a question before `=>`")
    examples = [core.rules.teach(caller.platform, caller.user_id, q, answer) for q in phrasings]
    if len(examples) == 1:
        return CommandResult(f"Learned (example {examples[0]}): {phrasings[0]!r} => {answer!r}")
    asked = " | ".join(repr(q) for q in phrasings)
    return CommandResult(f"Learned {len(examples)} phrasings (examples {', '.join(examples)}): {asked} => {answer!r}")


def _review(core: CommandContext, caller: Caller, page: int = 1) -> CommandResult:
    return CommandResult(core.rules.review_text(page))


def _accept(core: CommandContext, caller: Caller, correction_id: str) -> CommandResult:
    return core.rules.review(correction_id, True, caller.who)


def _reject(core: CommandContext, caller: Caller, correction_id: str) -> CommandResult:
    return core.rules.review(correction_id, False, caller.who)


def _export(core: CommandContext, caller: Caller, file: str) -> CommandResult:
    from bot.training.export import chat_export_path, export_feedback, kto_path, votes_path

    # The terminal and the CLI are the data directory's owner: any path. Chat: exports/ only.
    path = Path(file) if caller.platform in LOCAL_PLATFORMS else chat_export_path(core.settings.data_dir, file)
    counts = export_feedback(core.settings, core.examples, core.store, path)
    text = (f"Wrote {counts['sft']} SFT rows to {path}, {counts['kto']} KTO rows to {kto_path(path)} and "
            f"{counts['votes']} voted replies with their 👎 reasons to {votes_path(path)}")  # fmt: skip
    if counts["left_out"]:  # the files hold what a retrain would train on, nothing else
        text += (f"; {counts['left_out']} good example(s) left out, as a retrain leaves them out "
                 "(votes from scopes that do not train, or outranked by a taught answer)")  # fmt: skip
    return CommandResult(text)


def _examples_remove(core: CommandContext, caller: Caller, example_id: str) -> CommandResult:
    removed = core.examples.remove([example_id])
    if not removed:
        raise UserError(f"no example {example_id!r}; the console's Examples page and `bot examples list` show ids")
    log.info("%s removed example %s", caller.who, example_id)
    return CommandResult(f"Removed example {example_id}.")


def _lora_list(core: CommandContext, caller: Caller) -> CommandResult:
    registry = _registry(core)
    versions = [{"version": v.version, "status": v.status, "created_at": v.created_at,
                 "reason": v.manifest.get("reason", ""), "triggered_by": v.manifest.get("triggered_by", "")}
                for v in registry.versions()]  # fmt: skip
    return CommandResult(registry.describe(), data=versions)


def _lora_use(core: CommandContext, caller: Caller, version: str) -> CommandResult:
    _registry(core).use(version, by=caller.who)
    return CommandResult(core.after_swap(f"Now serving LoRA {version}."))


def _lora_rollback(core: CommandContext, caller: Caller) -> CommandResult:
    version = _registry(core).rollback(by=caller.who)
    return CommandResult(core.after_swap(f"Rolled back: now serving {version or 'the base model'}."))


def _registry(core: CommandContext) -> LoraRegistry:
    if core.registry is None:
        raise UserError("LoRA versions are not available in this process")
    return core.registry


def _trainer(core: CommandContext) -> TrainingRunner:
    if core.trainer is None:
        raise UserError("LoRA training is not available in this process")
    return core.trainer


# What a group of two-word commands is about (Discord's command groups, the CLI's subcommands).
GROUPS = {"lora": "LoRA versions: list, serve, roll back", "feedback": "Review and export feedback",
          "examples": "Verified examples"}  # fmt: skip

_CORRECTION_ID = Arg("correction_id", "The id shown by feedback review")

COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "show this help", _help, admin=False, cli=False),
        Command("reset", "forget this conversation's history", _reset, admin=False, cli=False),
        Command("status", "model, LoRA, examples, feedback counts and training progress", _status),
        Command("retrain", "train a new LoRA on the feedback in the background", _retrain),
        Command("lora list", "list LoRA versions", _lora_list),
        Command(
            "lora use",
            "serve a LoRA version (also promotes a candidate)",
            _lora_use,
            (Arg("version", "A version from lora list, e.g. v0003"),),
        ),
        Command("lora rollback", "go back to the previous LoRA", _lora_rollback),
        Command(
            "teach",
            "add a verified answer at once (several phrasings: Q1 | Q2 => A)",
            _teach,
            (Arg("question", "The question", rest=True), Arg("answer", "The answer to give", rest=True)),
            separator="=>",
            cli=False,
        ),
        Command(
            "feedback review",
            "list corrections waiting for review, a page at a time",
            _review,
            (Arg("page", "Which page of the list (default: the first)", int, optional=True),),
        ),
        Command("feedback accept", "accept a pending correction", _accept, (_CORRECTION_ID,), cli=False),
        Command("feedback reject", "reject a pending correction", _reject, (_CORRECTION_ID,), cli=False),
        Command(
            "examples remove",
            "remove a verified example by id (a vote-made one comes back if its votes still make it)",
            _examples_remove,
            (Arg("example_id", "The example's id (Examples page, bot examples list)"),),
            cli=False,  # the CLI has `bot examples remove IDS`, through a running bot's store
        ),
        Command(
            "feedback export",
            "write the feedback as JSONL for TRL (in chat: a new file in the exports folder)",
            _export,
            (Arg("file", "A file name, e.g. feedback.jsonl"),),
        ),
    )
}


# deriving: parser, help ------------------------------------------------------------------------


def parse(text: str) -> Call:
    """Read a command line ("lora use v0003", "/teach Q => A") into a Call; UserError when it can't."""
    line = text.strip().lstrip("/").strip()
    words = line.split()
    if not words:
        raise UserError("empty command; try `help`")
    for size in (2, 1):
        name = " ".join(w.lower() for w in words[:size])
        if len(words) >= size and name in COMMANDS:
            parts = line.split(maxsplit=size)
            return Call(COMMANDS[name], read_args(COMMANDS[name], parts[size] if len(parts) > size else ""))
    known = ", ".join(sorted({n.split()[0] for n in COMMANDS}))
    raise UserError(f"unknown command {line!r}; known commands: {known}")


def named(name: str, args: Mapping[str, Any]) -> Call:
    """A command given as its name and arguments by name (a platform with typed options)."""
    if name not in COMMANDS:
        raise UserError(f"unknown command {name!r}; try `help`")
    return Call(COMMANDS[name], typed_args(COMMANDS[name], args))


def read_args(command: Command, text: str) -> dict[str, Any]:
    """The arguments of `command` from the text after its name."""
    args = command.args
    text = text.strip()
    if not args:
        if text:
            raise UserError(f"`{command.name}` takes no arguments; usage: `{command.usage}`")
        return {}
    if command.separator:
        # Split at the first separator: the question can't hold one in text form (a platform with
        # typed options, Discord, passes both as they are).
        values = [part.strip() for part in text.split(command.separator, len(args) - 1)]
    elif args[-1].rest:
        values = text.split(maxsplit=len(args) - 1)
    else:
        values = _words(text, command)
    required = sum(not a.optional for a in args)
    if not required <= len(values) <= len(args) or not all(values):
        raise UserError(f"`{command.name}` needs `{command.usage}`{_example(command)}")
    # strict=False: trailing optional arguments may be left out.
    return typed_args(command, dict(zip((a.name for a in args), values, strict=False)))


def typed_args(command: Command, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert arguments given by name (text form or a platform's typed options)."""
    optional = {a.name for a in command.args if a.optional}
    # A typed platform (Discord) or the CLI sends an optional argument left out as None.
    values = {name: value for name, value in values.items() if not (name in optional and value is None)}
    if not {a.name for a in command.args} - optional <= set(values) <= {a.name for a in command.args}:
        raise UserError(f"`{command.name}` needs `{command.usage}`")
    converted: dict[str, Any] = {}
    for arg in (a for a in command.args if a.name in values):
        value = values[arg.name]
        try:
            converted[arg.name] = arg.type(value.strip() if isinstance(value, str) else value)
        except ValueError:
            raise UserError(f"{arg.name} must be a {arg.type.__name__}, not {value!r}") from None
        if isinstance(converted[arg.name], str) and not converted[arg.name]:
            raise UserError(f"`{command.name}` needs a {arg.name.replace('_', ' ')}: `{command.usage}`")
    return converted


def _words(text: str, command: Command) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:  # an unbalanced quote, e.g. `feedback accept "abc`
        raise UserError(f"cannot read {text!r} ({exc}): close the quote or leave quotes out") from None


def _example(command: Command) -> str:
    if command.name == "teach":
        return ", e.g. teach How do I reset my password? => Open Settings"
    return ""


def help_text(is_admin: bool) -> str:
    lines = ["Commands:"]
    for c in COMMANDS.values():
        if is_admin or not c.admin:
            lines.append(f"  {c.usage:<28} {c.help}{'  (admins)' if c.admin else ''}")
    lines.append("React with 👍 or 👎 to a reply to vote on it; reply `correct: <better answer>` to correct it.")
    return "\n".join(lines)


def run_event(core: CommandContext, event: Incoming, is_admin: bool) -> CommandResult:
    """A command as a platform sends it (a text line, or a name with typed options), for its caller."""
    try:
        text = event.command or ""
        call = parse(text) if event.command_args is None else named(text, event.command_args)
    except UserError as exc:
        return CommandResult(str(exc), ok=False)
    return run(core, Caller(event.platform, event.user_id, event.conversation, is_admin), call)


def run(core: CommandContext, caller: Caller, call: Call) -> CommandResult:
    """Run a parsed command for `caller`: admin-only ones are refused to others, here."""
    if call.command.admin and not caller.is_admin:
        log.warning("refused admin command %r from %s", call.command.name, caller.who)
        return CommandResult(f"Sorry, `{call.command.name}` is for admins only. Ask an admin, or try `help`.", ok=False)
    try:
        return call.command.handler(core, caller, **call.args)
    except UserError as exc:
        return CommandResult(str(exc), ok=False)
