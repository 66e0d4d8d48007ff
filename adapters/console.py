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

from adapters.command_output import followup_text
from bot.core import Core
from bot.types import (
    Answering,
    CommandResult,
    ConversationKey,
    Done,
    Incoming,
    Queued,
    Reaction,
    Token,
    UserError,
    VoteResult,
)

log = logging.getLogger(__name__)
PLATFORM = "console"
CONVERSATION = ConversationKey(PLATFORM, "local")
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
    last_reply: str | None = None  # the ref /good, /bad and /correct are about
    training: list[Future[str]] = []  # runs started here: leaving waits for them, or stops them aloud
    for line in lines if lines is not None else _stdin_lines():
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        try:
            outcome = core.handle(_event(core, text, last_reply))
            if isinstance(outcome, Answering):
                last_reply = _show_answer(core, outcome, say) or last_reply
            elif isinstance(outcome, VoteResult):
                note = "it is now an example" if outcome.is_example else "noted"
                say(f"Thanks: score {outcome.score:+d}, {note}.")
            elif isinstance(outcome, CommandResult):
                say(outcome.text)
                if outcome.followup is not None:
                    training.append(outcome.followup)
                    outcome.followup.add_done_callback(lambda f: say(f"\n[training] {followup_text(f)}"))
                    _show_training_progress(core, outcome.followup, say)
        except UserError as exc:
            say(f"! {exc}")
        except KeyboardInterrupt:
            say("\n(interrupted)")
        except Exception as exc:  # a failing command or answer must not end the chat
            log.exception("console input %r failed", text)
            say(f"! that failed: {type(exc).__name__}: {exc}")
    _finish_training(core, [run for run in training if not run.done()], say)


def _finish_training(core: Core, running: list[Future[str]], say: Callable[..., None]) -> None:
    """Leaving the chat ends the bot, and a training run it started with it: wait for the run (its
    result is printed), or stop it on Ctrl-C, and say which."""
    if not running or core.trainer is None:
        return
    say(f"A training run is still going ({core.trainer.progress_text()}); waiting for it before leaving. "
        "Ctrl-C stops it.")  # fmt: skip
    try:
        for run in running:
            run.result()
    except KeyboardInterrupt:
        core.trainer.kill()
        say("\nStopped the training run; the serving LoRA is unchanged.")
    except Exception:  # the run failed: its callback said so already
        pass


def _event(core: Core, text: str, last_reply: str | None) -> Incoming | Reaction:
    """A line as the event it stands for: `/good`, `/bad` and `/correct` are about the last reply."""
    name, _, rest = text[1:].partition(" ") if text.startswith("/") else ("", "", "")
    if name in ("good", "bad", "correct"):
        if last_reply is None:
            raise UserError("there is no reply yet to vote on or correct")
        if name == "correct":
            correction = f"{core.settings.correction_prefix} {rest}"
            return Incoming(PLATFORM, CONVERSATION, USER, correction, replies_to=last_reply, replies_to_bot=True)
        return Reaction(PLATFORM, last_reply, USER, "+1" if name == "good" else "-1", added=True)
    if name:
        return Incoming(PLATFORM, CONVERSATION, USER, command=text[1:])
    return Incoming(PLATFORM, CONVERSATION, USER, text, is_dm=True)


def _show_answer(core: Core, answering: Answering, say: Callable[..., None]) -> str | None:
    """Print the answer as it is written; returns the ref that votes on it use."""
    say("bot> ", end="")
    for event in answering.events:
        if isinstance(event, Queued):
            say(f"(queued, {event.position} ahead) ", end="")
        elif isinstance(event, Token):
            say(event.text, end="")
        elif isinstance(event, Done):
            reply = event.reply
            core.link_message(reply.exchange_id, PLATFORM, reply.exchange_id)  # the terminal's "message"
            lora = reply.lora_version or "base"
            say(f"\n     [{reply.stats.latency_s:.1f}s, lora {lora}, {len(reply.example_ids)} examples]")
            return reply.exchange_id
    return None


def _show_training_progress(core: Core, done: Future[str], say: Callable[..., None]) -> None:
    """Print a progress bar line every tenth of the run while the user keeps chatting."""
    trainer = core.trainer
    if trainer is None:
        return

    def follow() -> None:
        shown = -1
        while not done.done():
            status = trainer.read_status()
            total, step = (status.total_steps or 0, status.step) if status else (0, 0)
            tenth = int(10 * step / total) if total else -1
            if tenth > shown:
                shown = tenth
                bar = "█" * tenth + "░" * (10 - tenth)
                say(f"\n[training] {bar} {trainer.progress_text()}")
            done_event.wait(2.0)

    done_event = threading.Event()
    done.add_done_callback(lambda _: done_event.set())
    threading.Thread(target=follow, name="training-progress", daemon=True).start()
