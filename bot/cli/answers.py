"""`bot ask` and `bot eval`: questions through the serving path, alone or in a conversation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from bot.status import status_data
from bot.types import LOCAL_SCOPE, ConversationKey, Message, UserError

if TYPE_CHECKING:
    pass


from bot.cli.base import app, console, fail, load_core, settings


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
    core = load_core(settings())
    # One-shot by default: each call a fresh conversation, so no earlier `ask` rides along as history.
    key = ConversationKey("cli", "ask", conversation if conversation is not None else uuid.uuid4().hex)
    try:
        reply = core.answer(Message(key, "local", text, scope=LOCAL_SCOPE))
    except UserError as exc:
        fail(str(exc), 2)
    if as_json:
        examples = {e.id: e for e in core.examples.get(list(reply.example_ids))}
        stored = core.store.exchange(reply.exchange_id)
        print(json.dumps({
            "reply": reply.text,
            "exchange_id": reply.exchange_id,
            "example_ids": list(reply.example_ids),
            "examples": [{"id": i, "input": examples[i].input} for i in reply.example_ids if i in examples],
            "lora_version": reply.lora_version,
            "retriever_version": stored.retriever_version if stored else None,
            "engine": status_data(core).get("engine"),
            "latency_s": round(reply.stats.latency_s, 3),
            "first_token_s": round(first, 3) if (first := reply.stats.first_token_s) is not None else None,
            "prompt_tokens": reply.stats.prompt_tokens,
            "completion_tokens": reply.stats.completion_tokens,
        }, ensure_ascii=False))  # fmt: skip
    else:
        print(reply.text)


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

    core = load_core(settings())
    mode = (reset_every or 0) if conversation else ALONE
    order = CONVERSATION_SEED if conversation and not in_order else None
    try:
        with _eval_progress() as progress:
            report = evaluate_file(core_answerer(core, file.stem), file, progress, mode, order)
    except UserError as exc:
        fail(str(exc), 2)
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
