"""What a chat adapter shows for a command: the text of a command that raised, and the follow-up of a
long one (a retrain) when it ends."""

from __future__ import annotations

import logging
from concurrent.futures import Future

from bot.ops import metrics
from bot.types import CommandResult

log = logging.getLogger(__name__)

COMMAND_FAILED = "Sorry, that command failed; the logs say why."


def command_failed(platform: str, command: str) -> CommandResult:
    """What a user sees when their command raised: call it in the `except`, which it logs (with the
    traceback) and counts as a platform error."""
    log.exception("%s command %r failed", platform.capitalize(), command)
    metrics.PLATFORM_ERRORS.labels(platform).inc()
    return CommandResult(COMMAND_FAILED, ok=False)


def followup_text(done: Future[str]) -> str:
    """What to post when a long command (a retrain) finishes, fails or is cancelled."""
    if done.cancelled():
        return "⚠️ Cancelled."
    if (exc := done.exception()) is not None:
        return f"⚠️ Failed: {exc}"
    return done.result()
