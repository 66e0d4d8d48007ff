"""`bot run` and `bot chat`: the platforms or the terminal chat, stopped cleanly by SIGTERM."""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.core import Core


from bot.cli.base import app, console, fail, load_core, settings


@app.command()
def chat() -> None:
    """Chat in the terminal."""
    from adapters.console import run_console

    run_console(load_core(settings(), own_data_dir=True))


@app.command()
def run() -> None:
    """Start the configured chat platforms (Slack, Discord), or the terminal chat when none is set."""
    from bot.ops.health import Readiness, serve

    s = settings()
    runners = []
    if s.slack.enabled:
        from adapters.slack import app as slack

        runners.append(("slack", slack.run))
    if s.discord.enabled:
        from adapters.discord_bot import client as discord_bot

        runners.append(("discord", discord_bot.run))
    if not runners and not sys.stdin.isatty() and _stdin_at_end():
        # A container or service with no token: the terminal chat would read end of input at once and
        # exit 0, to be restarted forever. Say what is missing and fail, so the orchestrator shows it.
        fail("no chat platform is configured (set SLACK_BOT_TOKEN and SLACK_APP_TOKEN, or DISCORD_TOKEN) and "
              "there is no terminal for the terminal chat", 2)  # fmt: skip
    signal.signal(signal.SIGTERM, _stop)  # `docker stop`, Kubernetes: as PID 1 Python ignores it otherwise
    # Ready once the model is loaded and every configured platform is connected (/readyz).
    readiness = Readiness(["model", *(name for name, _ in runners)])
    if s.metrics_port:
        serve(readiness, s.metrics_port)
    try:
        core = load_core(s, own_data_dir=True)
    except Stopped:
        console.print("Stopped while loading.")
        return
    readiness.up("model")
    if s.web.port:
        from bot.cli.web import serve_beside_bot

        serve_beside_bot(core, s)
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
