"""Slack's AI app surface (`slack.assistant`): bolt's `Assistant` middleware on the side panel.

A new assistant thread gets a greeting and up to four suggested prompts: the questions of the
examples this workspace sees (taught, corrected and imported ones first). A question in it is
answered through the same core path as any DM (the thread is the conversation); the thread is
titled after its first question and shows "thinking…" until the answer appears (Slack clears the
status when the app replies). Channel mentions and DMs outside the panel are unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import BoltContext, Say, SetStatus, SetSuggestedPrompts, SetTitle
from slack_bolt.middleware.assistant import Assistant
from slack_sdk import WebClient

from adapters.slack import PLATFORM
from bot.types import GLOBAL_SCOPE, Answering, CommandResult, ConversationKey, Outcome, workspace_scope

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

GREETING = "Hi! Ask me anything. Vote 👍 or 👎 under an answer, and I'll learn from it."
PROMPTS_TITLE = "Questions people ask:"
MAX_PROMPTS = 4  # Slack shows at most four suggested prompts
TITLE_CHARS = 60
THINKING = "thinking…"
SOURCES = ("taught", "correction", "import")  # the verified answers, in this order of preference
HandleMessage = Callable[[dict[str, Any], BoltContext, WebClient], Outcome | None]


def suggested_prompts(core: Core, team: str) -> list[str]:
    """Up to MAX_PROMPTS questions of this workspace's (and every workspace's) good examples."""
    seen = {GLOBAL_SCOPE, workspace_scope(PLATFORM, team)}
    examples = [e for e in core.examples.list(label="good") if e.scope in seen]
    rank = {source: i for i, source in enumerate(SOURCES)}
    examples.sort(key=lambda e: rank.get(e.source, len(SOURCES)))  # stable: oldest first within a source
    prompts: list[str] = []
    for example in examples:
        question = example.input.strip()
        if question and question not in prompts and len(question) <= 150:
            prompts.append(question)
        if len(prompts) == MAX_PROMPTS:
            break
    return prompts


def build_assistant(core: Core, handle_message: HandleMessage) -> Assistant:
    """The middleware, with its listeners; `handle_message` is the adapter's path for a message."""
    assistant = Assistant()

    @assistant.thread_started
    def started(say: Say, set_suggested_prompts: SetSuggestedPrompts, context: BoltContext) -> None:
        say(GREETING)
        prompts = suggested_prompts(core, context.team_id or "")
        if prompts:
            set_suggested_prompts(prompts=prompts, title=PROMPTS_TITLE)

    @assistant.thread_context_changed
    def context_changed() -> None:
        """The user switched channels beside the panel: the answers do not depend on it."""

    @assistant.user_message
    def message(
        payload: dict[str, Any], context: BoltContext, client: WebClient, set_status: SetStatus, set_title: SetTitle
    ) -> None:
        conversation = ConversationKey(PLATFORM, payload["channel"], payload.get("thread_ts") or "")
        if not core.has_history(conversation):
            set_title((payload.get("text") or "").strip()[:TITLE_CHARS] or "New question")
        set_status(THINKING)  # before the answer can be posted, which clears it
        outcome = handle_message(payload, context, client)
        if not isinstance(outcome, (Answering, CommandResult)):  # nothing will be posted
            set_status("")

    return assistant
