"""The managing commands: examples, doctor, the chat commands offered on the CLI, the trainer."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bot import commands
from bot.commands import COMMANDS, Caller, Command
from bot.config import Settings
from bot.types import CommandResult, ConversationKey, UserError

if TYPE_CHECKING:
    from bot.stores.example_server import ExampleWriter
    from bot.training.runner import TrainingRunner
    from bot.training.status import TrainingStatus


from bot.cli.base import app, console, examples_app, fail, feedback_app, lora_app, settings


@examples_app.command("import")
def examples_import(file: Path) -> None:
    """Import a JSONL file of {"input", "output", "label"?}; nothing is imported if any line is bad."""
    from bot.jsonl import JsonlFileError
    from bot.stores.examples import parse_examples_file

    s = settings()
    try:
        parsed = parse_examples_file(file)
    except JsonlFileError as exc:
        fail(str(exc), 2)
    with _writable_examples(s) as store, Progress(
        TextColumn("Importing"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
        console=console,
    ) as progress:  # fmt: skip
        task = progress.add_task("import", total=len(parsed))
        ids = store.upsert(
            parsed, source=f"import:{file.name}", progress=lambda done, _: progress.update(task, completed=done)
        )
        total = store.count()
    console.print(f"Imported {len(set(ids))} examples from {file} ({total} in the store).")


@contextmanager
def _writable_examples(s: Settings) -> Iterator[ExampleWriter]:
    """The store to write: a running bot's, through its socket, else the store itself, locked."""
    from bot.stores.example_server import examples_access
    from bot.stores.opening import build_examples

    try:
        with examples_access(s.data_dir, lambda: build_examples(s)) as store:
            yield store
    except UserError as exc:
        fail(str(exc), 2)


@examples_app.command("list")
def examples_list(
    limit: Annotated[int, typer.Option(help="how many to show")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List examples, oldest first."""
    from bot.stores.opening import build_examples

    found = build_examples(settings()).list(limit=limit)
    if as_json:
        print(json.dumps([e.__dict__ for e in found], ensure_ascii=False))
        return
    table = Table("id", "label", "source", "input", "output")
    for e in found:
        table.add_row(e.id, e.label, e.source, e.input[:60], e.output[:60])
    Console().print(table)


@examples_app.command("remove")
def examples_remove(ids: list[str]) -> None:
    """Remove examples by id."""
    with _writable_examples(settings()) as store:
        removed = store.remove(ids)
    if removed != len(set(ids)):
        fail(f"removed {removed} of {len(set(ids))}: the other ids do not exist", 2)
    console.print(f"Removed {removed} example(s).")


@app.command()
def doctor() -> None:
    """Show what is installed, which model and device, and where the data lives."""
    from bot.cli.doctor import doctor_table

    Console().print(doctor_table(settings()))


# The chat commands the CLI offers too, derived from bot/commands.py: `bot lora use VERSION`,
# `bot feedback export FILE`, `bot status`, `bot retrain`. They run as the data directory's
# owner and load no language model (a running bot picks a LoRA change up within a second).


def _add_chat_commands() -> None:
    groups = {"lora": lora_app, "feedback": feedback_app}
    for command in COMMANDS.values():
        if command.cli:
            head, _, leaf = command.name.partition(" ")
            (groups[head] if leaf else app).command(leaf or head, help=command.help)(_chat_command(command))


def _chat_command(command: Command) -> Callable[..., None]:
    def callback(**args: Any) -> None:
        from bot.wiring import build_core

        s = settings()
        with console.status("Opening the data directory…"):
            core = build_core(s, with_model=False)
        caller = Caller("cli", "local", ConversationKey("cli", "local"), is_admin=True)
        as_json = args.pop("as_json")
        result = commands.run(core, caller, commands.named(command.name, args))
        if result.followup is not None and core.trainer is not None:
            result = _follow_training(core.trainer, result)
        # The result on stdout (`bot lora list | grep v0001`), diagnostics and progress on stderr.
        if as_json:
            print(json.dumps({"ok": result.ok, "text": result.text, "data": result.data}, ensure_ascii=False,
                             default=str))  # fmt: skip
        elif result.ok:
            print(result.text)
        if not result.ok:
            fail(result.text if not as_json else "see the JSON above", 2)

    # typer reads a command's arguments from its callback's signature: give it the declared ones.
    callback.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                a.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None if a.optional else inspect.Parameter.empty,  # `feedback review [PAGE]`
                annotation=Annotated[a.type, typer.Argument(help=a.help)],
            )
            for a in command.args
        ]
        + [
            inspect.Parameter(
                "as_json",
                inspect.Parameter.KEYWORD_ONLY,
                default=False,
                annotation=Annotated[bool, typer.Option("--json", help="print one JSON object: ok, text, data")],
            )
        ]
    )
    return callback


def _follow_training(trainer: TrainingRunner, started: CommandResult) -> CommandResult:
    """`bot retrain` waits for the run in the foreground (here or on a trainer), with a progress bar."""
    assert started.followup is not None
    console.print(started.text)
    with _training_progress() as show:
        while not started.followup.done():
            if (status := trainer.read_status()) is not None:
                show(status)
            time.sleep(0.5)
    text = started.followup.result()
    status = trainer.read_status()
    if status is not None and status.loss_plot:
        text += f"\nLoss curve: {status.loss_plot}"
    return CommandResult(text, ok=status is not None and status.phase == "done")


@contextmanager
def _training_progress() -> Iterator[Callable[[TrainingStatus], None]]:
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[loss]}"), TimeRemainingColumn(), console=console) as progress:  # fmt: skip
        task = progress.add_task("starting", total=None, loss="")

        def show(status: TrainingStatus) -> None:
            loss = f"loss {status.loss:.3f}" if status.loss is not None else ""
            progress.update(task, description=status.phase, completed=status.step, total=status.total_steps,
                            loss=loss)  # fmt: skip

        yield show


@app.command()
def trainer(
    once: Annotated[bool, typer.Option(help="run the first request, then exit (a Kubernetes Job)")] = False,
) -> None:
    """Run the training requests of bots with `training.runner = "worker"` here (a GPU node, a Job)."""
    from bot.training import remote
    from bot.wiring import build_core

    s = settings()
    local = s.model_copy(update={"training": s.training.model_copy(update={"runner": "here"})})
    core = build_core(local, with_model=False)
    assert core.trainer is not None
    console.print(f"Waiting for training requests in {core.trainer.dir}…")
    raise typer.Exit(remote.serve(core.trainer, once=once) if once else remote.serve(core.trainer))


_add_chat_commands()
