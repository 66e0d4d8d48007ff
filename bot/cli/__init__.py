"""The `bot` command line (also `python -m bot`): one Typer app; each module adds its commands."""

from bot.cli import answers, manage, run, web  # noqa: F401  (registering their commands on the app)
from bot.cli.base import app

__all__ = ["app"]
