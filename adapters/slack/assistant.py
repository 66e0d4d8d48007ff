"""Slack's AI app surface (`slack.assistant`): bolt's `Assistant` middleware on the side panel.

A new assistant thread in a workspace the bot serves (`SLACK_ALLOWED_TEAMS`) gets one greeting,
however often Slack delivers the event, and up to four suggested prompts: questions of the examples
the panel's own answers can retrieve (the global ones and that DM's; taught, corrected and imported
ones first). Both are posted from the adapter's reply pool, after the ack. A question in it is
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
from bot.types import GLOBAL_SCOPE, Answering, CommandResult, ConversationKey, Outcome, dm_scope

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
Later = Callable[[Callable[[], None]], object]


def suggested_prompts(core: Core, channel: str) -> list[str]:
    """Up to MAX_PROMPTS questions of the good examples a message in the panel's DM `channel` retrieves
    from: the global ones and that DM's (a workspace's voted examples are not retrieved in a DM)."""
    examples = core.examples.list(label="good", scopes=(GLOBAL_SCOPE, dm_scope(PLATFORM, channel)))
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


def build_assistant(core: Core, handle_message: HandleMessage, later: Later) -> Assistant:
    """The middleware, with its listeners; `handle_message` is the adapter's path for a message,
    `later` runs work on its reply pool (after the listener returns, and so after the ack)."""
    assistant = Assistant()

    @assistant.thread_started
    def started(
        payload: dict[str, Any], body: dict[str, Any], say: Say, set_suggested_prompts: SetSuggestedPrompts,
        context: BoltContext,
    ) -> None:  # fmt: skip
        team = context.team_id or body.get("team_id") or ""
        if not core.rules.invited(PLATFORM, team):
            return  # a workspace the bot does not serve: nothing said, nothing listed
        thread = payload.get("assistant_thread") or {}
        started_id = f"assistant:{thread.get('channel_id', '')}:{thread.get('thread_ts', '')}"
        if not core.store.claim_event(PLATFORM, started_id):
            return  # Slack delivered the event again: one greeting per thread

        def greet() -> None:
            say(GREETING)
            prompts = suggested_prompts(core, thread.get("channel_id") or context.channel_id or "")
            if prompts:
                set_suggested_prompts(prompts=prompts, title=PROMPTS_TITLE)

        later(greet)

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
