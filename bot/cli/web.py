"""`bot web`: the admin console, beside a running bot or alone on the data directory."""

from __future__ import annotations

import getpass
import logging
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli.base import app, console, settings
from bot.types import WEB_PLATFORM, UserError

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import Core

log = logging.getLogger(__name__)


@app.command()
def web(
    host: Annotated[str | None, typer.Option(help="address to bind (default BOT_WEB_HOST, 127.0.0.1)")] = None,
    port: Annotated[int, typer.Option(help="port to serve on")] = 8400,
) -> None:
    """Serve the admin console. The first line on stdout is its address with a one-time sign-in link."""
    import uvicorn

    from bot.stores.example_server import DataDirOwner
    from bot.web.app import create_app
    from bot.web.auth import OneTimeLinks
    from bot.wiring import build_core

    s = settings()
    owner = getpass.getuser()
    with console.status("Opening the data directory…"):
        core = build_core(s.model_copy(update={"admins": [*s.admins, f"{WEB_PLATFORM}:{owner}"]}), with_model=False)
    try:  # no bot runs here: this process writes the examples (and serves the CLI's writes)
        claim = DataDirOwner.acquire(s.data_dir)
        claim.serve(core.examples)
        owns = True
    except UserError:
        owns = False
        console.print("A bot runs on this data directory: the console shows its examples but changes them only "
                      "when the bot serves it (BOT_WEB_PORT).")  # fmt: skip
    links = OneTimeLinks()
    shown = host or s.web.host
    print(f"http://{shown}:{port}/signin/{links.issue(owner)}", flush=True)
    uvicorn.run(create_app(core, owns, links), host=shown, port=port, log_level="warning")


def serve_beside_bot(core: Core, s: Settings) -> None:
    """`bot run` with BOT_WEB_PORT: the console in the bot's own process, signed in with BOT_WEB_TOKEN."""
    if not s.web.token:
        log.error("BOT_WEB_PORT is set but BOT_WEB_TOKEN is not: nobody could sign in, so the console is not served")
        return
    import uvicorn

    from bot.web.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(core), host=s.web.host, port=s.web.port, log_level="warning"))
    threading.Thread(target=server.run, name="console", daemon=True).start()
    log.info("admin console on http://%s:%d (sign in with BOT_WEB_TOKEN as a name listed as web:NAME in BOT_ADMINS)",
             s.web.host, s.web.port)  # fmt: skip
