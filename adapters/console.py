"""Terminal chat: a REPL that streams replies and takes /good, /bad, /correct and admin commands.

Also the end-to-end test driver: `run_console(core, lines, out)` reads from any iterable.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TextIO

from bot.core import Core
from bot.types import LOCAL_SCOPE, CommandResult, ConversationKey, Done, Message, Queued, Token, UserError

log = logging.getLogger(__name__)
CONVERSATION = ConversationKey("console", "local")
USER = "local"
BANNER = "Chat with the bot. /help for commands, /quit to leave."


def _stdin_lines() -> Iterator[str]:
    while True:
        try:
            yield input("you> ")
        except EOFError:
            return


def run_console(core: Core, lines: Iterable[str] | None = None, out: TextIO = sys.stdout) -> None:
    """Chat until /quit or end of input."""
    write_lock = threading.Lock()

    def say(text: str = "", end: str = "\n") -> None:
        with write_lock:
            out.write(text + end)
            out.flush()

    say(BANNER)
    last_exchange: str | None = None
    for line in lines if lines is not None else _stdin_lines():
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        try:
            if text.startswith("/"):
                result = _slash(core, text[1:], last_exchange)
                say(result.text)
                if result.followup is not None:
                    result.followup.add_done_callback(lambda f: say(f"\n[training] {f.result()}"))
                    _show_training_progress(core, result.followup, say)
                continue
            last_exchange = _chat(core, text, say)
        except UserError as exc:
            say(f"! {exc}")
        except KeyboardInterrupt:
            say("\n(interrupted)")
        except Exception as exc:  # a failing command or answer must not end the chat
            log.exception("console input %r failed", text)
            say(f"! that failed: {type(exc).__name__}: {exc}")


def _chat(core: Core, text: str, say: Callable[..., None]) -> str:
    say("bot> ", end="")
    exchange_id = ""
    for event in core.answer_stream(Message(CONVERSATION, USER, text, scope=LOCAL_SCOPE)):
        if isinstance(event, Queued):
            say(f"(queued, {event.position} ahead) ", end="")
        elif isinstance(event, Token):
            say(event.text, end="")
        elif isinstance(event, Done):
            exchange_id = event.reply.exchange_id
            lora = event.reply.lora_version or "base"
            say(f"\n     [{event.reply.latency_s:.1f}s, lora {lora}, {len(event.reply.example_ids)} examples]")
    return exchange_id


def _show_training_progress(core: Core, done: Future[str], say: Callable[..., None]) -> None:
    """Print a progress bar line every tenth of the run while the user keeps chatting."""
    trainer = core.trainer
    if trainer is None:
        return

    def follow() -> None:
        shown = -1
        while not done.done():
            status = trainer.read_status()
            total, step = status.get("total_steps") or 0, status.get("step") or 0
            tenth = int(10 * step / total) if total else -1
            if tenth > shown:
                shown = tenth
                bar = "█" * tenth + "░" * (10 - tenth)
                say(f"\n[training] {bar} {trainer.progress_text()}")
            done_event.wait(2.0)

    done_event = threading.Event()
    done.add_done_callback(lambda _: done_event.set())
    threading.Thread(target=follow, name="training-progress", daemon=True).start()


def _slash(core: Core, command: str, last_exchange: str | None) -> CommandResult:
    name, _, rest = command.partition(" ")
    if name in ("good", "bad", "correct"):
        if last_exchange is None:
            raise UserError("there is no reply yet to vote on or correct")
        if name == "correct":
            return core.correct("console", USER, last_exchange, rest)
        result = core.vote(last_exchange, "console", USER, 1 if name == "good" else -1)
        note = "it is now an example" if result.is_example else "noted"
        return CommandResult(f"Thanks: score {result.score:+d}, {note}.")
    return core.command("console", USER, command, CONVERSATION)
