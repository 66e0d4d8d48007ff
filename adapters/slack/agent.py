"""Slack's agent experience (`slack.agent`, the manifest's `agent_view`): what a new Slack app gets.

- **Sessions.** Every thread the bot answers in is an agent session: `processing` (titled after
  its first question) while a reply is written, which shows Slack's Stop button, and `active`
  once it is shown. A click on Stop (`agent_session_stopped`) stops the reply being written in that
  thread: the model stops at its next token, the text so far stays marked stopped and takes no
  votes, and the session leaves `processing` (Slack leaves that to the app).
- **The Messages tab.** Opening it (`app_home_opened`, tab `messages`) greets the user once a day
  and pins up to four suggested prompts from the verified answers a DM can use.
- **What the user looks at** (`app_context_changed`) is remembered per user and not used for
  answers: retrieval follows where a message is written, never what its writer has open beside it.

A workspace whose app is not an agent (the methods refused) is remembered and not asked again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache, TTLCache
from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from adapters.slack import PLATFORM
from adapters.slack.assistant import GREETING, PROMPTS_TITLE, suggested_prompts
from adapters.slack.format import to_slack
from bot.types import Answering

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

TITLE_CHARS = 200  # agents.sessions.setStatus takes a title of up to 200 characters
PROMPTS_EVERY_S = 600.0  # the Messages tab's prompts are set again at most this often per DM
MAX_REMEMBERED = 4096
# Errors that mean "this app or workspace has no agent sessions": asked no more.
NOT_AN_AGENT = frozenset(
    {"not_allowed", "not_allowed_token_type", "missing_scope", "unknown_method", "feature_not_enabled",
     "method_not_supported", "app_not_agent"}
)  # fmt: skip
Later = Callable[..., Future[None]]


class AgentExperience:
    """The agent sessions of the threads being answered, the Stop button, and the Messages tab."""

    def __init__(self, core: Core, later: Later) -> None:
        self.core, self.later = core, later
        self._lock = threading.Lock()
        self._answering: dict[tuple[str, str], Answering] = {}  # (channel, thread) -> the reply being written
        self._refused: set[str] = set()  # workspaces where sessions are refused
        self._warned: set[str] = set()
        self._prompted: TTLCache[str, bool] = TTLCache(MAX_REMEMBERED, PROMPTS_EVERY_S)
        self.viewing: LRUCache[str, list[dict[str, Any]]] = LRUCache(MAX_REMEMBERED)  # user -> context entities

    def register(self, app: App) -> None:
        app.event("agent_session_stopped")(self.on_stopped)
        app.event("app_home_opened")(self.on_home_opened)
        app.event("app_context_changed")(self.on_context_changed)

    # sessions ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self, client: WebClient, team: str, channel: str, thread: str, answering: Answering) -> Iterator[None]:
        """Around showing one reply in `thread`: processing (Stop shown, a click stops it), then active."""
        key = (channel, thread)
        with self._lock:
            self._answering[key] = answering
        title = " ".join(answering.message.text.split())[:TITLE_CHARS] or "New question"
        self.set_status(client, team, channel, thread, "processing", title=title,
                        initiator_user_id=answering.message.user_id)  # fmt: skip
        try:
            yield
        finally:
            with self._lock:
                if self._answering.get(key) is answering:
                    del self._answering[key]
            self.set_status(client, team, channel, thread, "active")

    def set_status(self, client: WebClient, team: str, channel: str, thread: str, status: str, **extra: str) -> None:
        """agents.sessions.setStatus; a failure never fails the reply."""
        if team in self._refused:
            return
        try:
            response = client.agents_sessions_setStatus(channel_id=channel, thread_ts=thread, status=status, **extra)
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error in NOT_AN_AGENT:
                self._refused.add(team)
                log.warning("Slack: workspace %s has no agent sessions (%s): set SLACK_AGENT=false or add "
                            "agent_view to the app (docs/slack.md)", team, error)  # fmt: skip
            else:
                log.warning("Slack: agents.sessions.setStatus(%s) failed: %s", status, error)
            return
        warnings = (response.get("response_metadata") or {}).get("warnings") or []
        for warning in warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning("Slack: agents.sessions.setStatus warns %s (subscribe to agent_session_stopped: "
                            "deploy/slack-manifest.yaml)", warning)  # fmt: skip

    def on_stopped(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        """Stop clicked: the reply being written in that thread stops; with none, the session leaves
        processing here (a reply that ended as the click came, or one lost to a restart)."""
        channel, thread = str(event.get("channel") or ""), str(event.get("thread_ts") or "")
        with self._lock:
            answering = self._answering.get((channel, thread))
        if answering is not None:
            log.info("Slack: Stop clicked in %s/%s: stopping the reply", channel, thread)
            answering.stop.set()  # the answer thread shows it stopped and sets the session active
        else:
            self.later(self.set_status, client, context.team_id or "", channel, thread, "active")

    # the Messages tab ---------------------------------------------------------------------------

    def on_home_opened(
        self, event: dict[str, Any], body: dict[str, Any], context: BoltContext, client: WebClient
    ) -> None:
        if event.get("tab") != "messages" or not event.get("channel"):
            return
        team = context.team_id or body.get("team_id") or ""
        if not self.core.rules.invited(PLATFORM, team):
            return  # a workspace the bot does not serve: nothing said, nothing listed
        channel = str(event["channel"])
        self.viewing[str(event.get("user") or "")] = (event.get("context") or {}).get("entities") or []
        # Once a day per DM (the event ids are kept a day): opening the tab again says nothing new.
        greet = self.core.store.claim_event(PLATFORM, f"agent-greeting:{channel}")
        prompt = channel not in self._prompted
        self._prompted[channel] = True
        if greet or prompt:
            self.later(self._welcome, client, channel, greet, prompt)

    def _welcome(self, client: WebClient, channel: str, greet: bool, prompt: bool) -> None:
        if greet:
            client.chat_postMessage(channel=channel, text=to_slack(GREETING))
        prompts = suggested_prompts(self.core, channel) if prompt else []
        if prompts:  # no thread_ts: under agent_view the prompts belong to the Messages tab
            client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, title=PROMPTS_TITLE, prompts=[{"title": p[:75], "message": p} for p in prompts]
            )

    def on_context_changed(self, event: dict[str, Any]) -> None:
        self.viewing[str(event.get("user") or "")] = (event.get("context") or {}).get("entities") or []
