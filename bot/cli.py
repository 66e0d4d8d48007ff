"""The `bot` command line (also `python -m bot`)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bot import commands
from bot.commands import COMMANDS, GROUPS, Caller, Command
from bot.config import ConfigError, Settings, load_settings
from bot.types import LOCAL_SCOPE, CommandResult, ConversationKey, Message, UserError

if TYPE_CHECKING:
    from bot.control import ExampleWriter
    from bot.core import Core
    from bot.training.runner import TrainingRunner
    from bot.training.status import TrainingStatus

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(help="A chat assistant that learns from its users.", no_args_is_help=True)
examples_app = typer.Typer(help="Manage labeled examples.", no_args_is_help=True)
lora_app = typer.Typer(help=GROUPS["lora"], no_args_is_help=True)
feedback_app = typer.Typer(help=GROUPS["feedback"], no_args_is_help=True)
app.add_typer(examples_app, name="examples")
app.add_typer(lora_app, name="lora")
app.add_typer(feedback_app, name="feedback")
console = Console(stderr=True)
CLI_USER = "cli:local"  # the CLI runs as the data directory's owner


class _State:
    config: Path | None = None
    data_dir: Path | None = None
    verbose: bool = False


# Libraries that log their own progress at INFO (Alembic's nine lines at every start) or warn about
# an optional package (bitsandbytes' `kernels`): quiet unless asked (--verbose, BOT_LOG_LEVEL=DEBUG).
NOISY_LOGGERS = {"alembic": logging.WARNING, "httpx": logging.WARNING, "chromadb": logging.WARNING,
                 "sentence_transformers": logging.WARNING, "urllib3": logging.WARNING,
                 "bitsandbytes": logging.ERROR}  # fmt: skip


state = _State()


@app.callback()
def main(
    config: Annotated[Path | None, typer.Option(help="TOML settings file (default $BOT_CONFIG or ./bot.toml)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="data directory (default $BOT_DATA_DIR or ./data)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log everything (BOT_LOG_LEVEL=DEBUG)")] = False,
) -> None:
    state.config = config
    state.data_dir = data_dir
    state.verbose = verbose


def settings() -> Settings:
    overrides: dict[str, Any] = {"data_dir": str(state.data_dir)} if state.data_dir else {}
    if state.verbose:
        overrides["log_level"] = "DEBUG"
    try:
        loaded = load_settings(state.config, **overrides)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    configure_logging(loaded)
    return loaded


def configure_logging(loaded: Settings) -> None:
    """Rich text on the terminal, or one JSON object a line for a log collector (`log_format`)."""
    if loaded.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler: logging.Handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler = RichHandler(console=console, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=loaded.log_level.upper(), handlers=[handler], force=True)
    debug = loaded.log_level.upper() == "DEBUG"
    for name, level in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.DEBUG if debug else level)


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _core(s: Settings, own_data_dir: bool = False) -> Core:
    """`own_data_dir`: this process is the bot, the one that writes the example store (bot.control)."""
    from bot.app import build_core
    from bot.model_files import ModelNotFound

    try:
        with console.status("Loading the model…"):
            return build_core(s.model_copy(update={"admins": [*s.admins, CLI_USER]}), own_data_dir=own_data_dir)
    except (ModelNotFound, UserError) as exc:
        _fail(str(exc))


@app.command()
def chat() -> None:
    """Chat in the terminal."""
    from adapters.console import run_console

    run_console(_core(settings(), own_data_dir=True))


@app.command()
def run() -> None:
    """Start the configured chat platforms (Slack, Discord), or the terminal chat when none is set."""
    from bot.health import Readiness, serve

    s = settings()
    runners = []
    if s.slack.enabled:
        from adapters import slack

        runners.append(("slack", slack.run))
    if s.discord.enabled:
        from adapters import discord_bot

        runners.append(("discord", discord_bot.run))
    if not runners and not sys.stdin.isatty() and _stdin_at_end():
        # A container or service with no token: the terminal chat would read end of input at once and
        # exit 0, to be restarted forever. Say what is missing and fail, so the orchestrator shows it.
        _fail("no chat platform is configured (set SLACK_BOT_TOKEN and SLACK_APP_TOKEN, or DISCORD_TOKEN) and "
              "there is no terminal for the terminal chat", 2)  # fmt: skip
    signal.signal(signal.SIGTERM, _stop)  # `docker stop`, Kubernetes: as PID 1 Python ignores it otherwise
    # Ready once the model is loaded and every configured platform is connected (/readyz).
    readiness = Readiness(["model", *(name for name, _ in runners)])
    if s.metrics_port:
        serve(readiness, s.metrics_port)
    try:
        core = _core(s, own_data_dir=True)
    except Stopped:
        console.print("Stopped while loading.")
        return
    readiness.up("model")
    if not runners:
        from adapters.console import run_console

        console.print("No SLACK_BOT_TOKEN or DISCORD_TOKEN set: starting the terminal chat.")
        try:
            run_console(core)
        except Stopped:
            _exit_now(core)
        return
    threads = [threading.Thread(target=fn, args=(core, s, readiness), name=name, daemon=True) for name, fn in runners]
    for thread in threads:
        console.print(f"Starting {thread.name}…")
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except (KeyboardInterrupt, Stopped):
        _exit_now(core)


def _stdin_at_end() -> bool:
    """True when standard input is already at its end (/dev/null, a closed pipe): nothing to chat with."""
    try:
        readable, _, _ = select.select([sys.stdin], [], [], 0)  # an open pipe with nothing yet: not at end
        return bool(readable) and sys.stdin.buffer.peek(1) == b""  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def _exit_now(core: Core) -> None:
    """Stop: the generation worker ends the replies it is writing, and the process exits 0 without
    waiting on the platform clients' and the pools' threads (joining them took `docker stop`'s 10 s).
    Everything acknowledged is already written (every store commits before the bot answers)."""
    console.print("Stopping.")
    try:
        if core.generation is not None:
            core.generation.close()
        core.store.close()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


class Stopped(BaseException):
    """SIGTERM: not an Exception (nothing may catch it on the way) and not Ctrl-C (which in the
    terminal chat only interrupts the answer being written)."""


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(f"signal {signum}")


@app.command()
def ask(
    text: str,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    conversation: Annotated[
        str | None,
        typer.Option(help="continue this conversation (any name; the same name again carries its history)"),
    ] = None,
) -> None:
    """Answer one message and exit: a conversation of its own unless --conversation names one."""
    core = _core(settings())
    # One-shot by default: each call a fresh conversation, so no earlier `ask` rides along as history.
    key = ConversationKey("cli", "ask", conversation if conversation is not None else uuid.uuid4().hex)
    try:
        reply = core.answer(Message(key, "local", text, scope=LOCAL_SCOPE))
    except UserError as exc:
        _fail(str(exc), 2)
    if as_json:
        examples = {e.id: e for e in core.examples.get(list(reply.example_ids))}
        print(json.dumps({
            "reply": reply.text,
            "exchange_id": reply.exchange_id,
            "example_ids": list(reply.example_ids),
            "examples": [{"id": i, "input": examples[i].input} for i in reply.example_ids if i in examples],
            "lora_version": reply.lora_version,
            "engine": core.status_data().get("engine"),
            "latency_s": round(reply.latency_s, 3),
            "first_token_s": round(reply.first_token_s, 3) if reply.first_token_s is not None else None,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
        }, ensure_ascii=False))  # fmt: skip
    else:
        print(reply.text)


@examples_app.command("import")
def examples_import(file: Path) -> None:
    """Import a JSONL file of {"input", "output", "label"?}; nothing is imported if any line is bad."""
    from bot.jsonl import JsonlFileError
    from bot.retrieval import parse_examples_file

    s = settings()
    try:
        parsed = parse_examples_file(file)
    except JsonlFileError as exc:
        _fail(str(exc), 2)
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
    from bot.app import build_examples
    from bot.control import examples_access

    try:
        with examples_access(s.data_dir, lambda: build_examples(s)) as store:
            yield store
    except UserError as exc:
        _fail(str(exc), 2)


@examples_app.command("list")
def examples_list(
    limit: Annotated[int, typer.Option(help="how many to show")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List examples, oldest first."""
    from bot.app import build_examples

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
        _fail(f"removed {removed} of {len(set(ids))}: the other ids do not exist", 2)
    console.print(f"Removed {removed} example(s).")


@app.command()
def doctor() -> None:
    """Show what is installed, which model and device, and where the data lives."""
    from bot.doctor import doctor_table

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
        from bot.app import build_core

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
            _fail(result.text if not as_json else "see the JSON above", 2)

    # typer reads a command's arguments from its callback's signature: give it the declared ones.
    callback.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                a.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[a.type, typer.Argument(help=a.help)]
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
    from bot.app import build_core
    from bot.training import worker

    s = settings()
    local = s.model_copy(update={"training": s.training.model_copy(update={"runner": "here"})})
    core = build_core(local, with_model=False)
    assert core.trainer is not None
    console.print(f"Waiting for training requests in {core.trainer.dir}…")
    raise typer.Exit(worker.serve(core.trainer, once=once) if once else worker.serve(core.trainer))


_add_chat_commands()


@app.command("eval")
def evaluate(
    file: Path,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    conversation: Annotated[
        bool, typer.Option("--conversation", help="ask every question in one conversation, as a user chats")
    ] = False,
    reset_every: Annotated[
        int | None, typer.Option(min=1, help="with --conversation: a new conversation every N questions")
    ] = None,
    in_order: Annotated[
        bool, typer.Option("--in-order", help="with --conversation: the file's order, not a shuffled one")
    ] = False,
) -> None:
    """Ask every `question` in FILE; a hit is a reply containing any of `expect_any`.

    Alone by default (a `followup` question still follows its opener); `--conversation` keeps the
    history as a chat does, in a seeded shuffled order (eval files list a fact's phrasings together),
    and counts replies that repeat the reply before them."""
    from bot.evaluation import ALONE, CONVERSATION_SEED, core_answerer, evaluate_file

    core = _core(settings())
    mode = (reset_every or 0) if conversation else ALONE
    order = CONVERSATION_SEED if conversation and not in_order else None
    try:
        with _eval_progress() as progress:
            report = evaluate_file(core_answerer(core, file.stem), file, progress, mode, order)
    except UserError as exc:
        _fail(str(exc), 2)
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        return
    for miss in report.misses:
        console.print(f"[yellow]miss[/yellow] {miss['question']!r} -> {miss['reply'][:100]!r}")
    line = f"accuracy {report.accuracy:.1%} ({report.hits}/{report.total})"
    if report.followup_total:
        line += f", follow-ups {report.followup_hits}/{report.followup_total}"
    print(f"{line}, repeated replies {report.repeats}")


@contextmanager
def _eval_progress() -> Iterator[Callable[[int, int], None]]:
    with Progress(TextColumn("Asking"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=console, transient=True) as progress:  # fmt: skip
        task = progress.add_task("eval", total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


if __name__ == "__main__":
    app()
