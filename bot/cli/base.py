"""The `bot` command line's shared parts: the Typer app, settings, logging, failing with a message."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler

from bot.commands import GROUPS
from bot.config import ConfigError, Settings, load_settings
from bot.types import UserError

if TYPE_CHECKING:
    from bot.core import Core

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


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def load_core(s: Settings, own_data_dir: bool = False) -> Core:
    """`own_data_dir`: this process is the bot, the one that writes the example store (bot.stores.example_server)."""
    from bot.generation.model_files import ModelNotFound
    from bot.wiring import build_core

    try:
        with console.status("Loading the model…"):
            return build_core(s.model_copy(update={"admins": [*s.admins, CLI_USER]}), own_data_dir=own_data_dir)
    except (ModelNotFound, UserError) as exc:
        fail(str(exc))
