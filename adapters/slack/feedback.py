"""The feedback buttons under Slack replies: a click is a vote, a 👎 opens "What would be right?",
which asks why (a reason, stored with the vote) and, optionally, for the right answer.

A click is counted as a reaction is (the core's one vote per user per reply, last wins, the asker's
own 👍 not promoting), written before the ack like every other listener's writes, and the voter
is told privately. The modal's answer becomes a correction of the reply under the usual trust
rules (an admin's counts at once, anyone else's waits for review). Nothing is kept in the bot:
the button's value and the modal's private_metadata name the exchange, so a restart loses nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from adapters.slack import PLATFORM
from adapters.slack.format import FEEDBACK_ACTION, message_ref, parse_vote, to_slack
from bot.types import VOTE_REASONS, CommandResult, ConversationKey, Correction, Ignored, Vote, VoteResult

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

CORRECTION_VIEW = "correction"  # the modal's callback_id (app.view)
SLACK_INPUT_MAX = 3000  # the most a plain_text_input may hold
Later = Callable[..., Future[None]]  # runs a function on the adapter's reply pool
ChannelKind = Callable[[WebClient, str], str]  # a channel's channel_type: "im", "group", "mpim", "channel"
PRIVATE_KINDS = {"group", "mpim"}  # channel_type of a private channel and of a group DM


class FeedbackButtons:
    def __init__(self, core: Core, later: Later, channel_kind: ChannelKind) -> None:
        self.core, self.later, self.channel_kind = core, later, channel_kind

    def register(self, app: App) -> None:
        app.action(FEEDBACK_ACTION)(self.on_click)
        app.view(CORRECTION_VIEW)(self.on_correction)

    def on_click(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        value, exchange_id = parse_vote(str(action.get("value") or ""))
        user, team = body["user"]["id"], _team(body)
        channel = (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id", "")
        thread_ts = (body.get("message") or {}).get("thread_ts")
        # action_ts names one click: a redelivered payload counts once.
        event_id = f"button:{exchange_id}:{user}:{action.get('action_ts') or body.get('trigger_id', '')}"
        clicked = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts") or ""
        ref = message_ref(channel, clicked) if clicked else ""
        outcome = self.core.handle(Vote(PLATFORM, exchange_id, user, value, event_id, team, ref))
        ack()  # the vote is written: now Slack may hear it arrived
        if isinstance(outcome, VoteResult):
            text = f"Thanks — counted {'👍' if value > 0 else '👎'}."
        else:
            text = f"Not counted: {outcome.reason if isinstance(outcome, Ignored) else 'not a vote'}."
        self.later(_tell, client, channel, user, thread_ts, text)
        if isinstance(outcome, VoteResult) and value < 0 and body.get("trigger_id"):
            meta = {"exchange": exchange_id, "channel": channel, "thread": thread_ts or ""}
            self.later(self._open_modal, client, body["trigger_id"], meta)

    def _open_modal(self, client: WebClient, trigger_id: str, meta: dict[str, str]) -> None:
        limit = min(self.core.settings.max_correction_chars, SLACK_INPUT_MAX)
        client.views_open(trigger_id=trigger_id, view=correction_view(meta, limit))

    def on_correction(self, ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        """The modal's answer, checked by the core as a `correct:` reply is and stored before the
        ack; a refusal is shown in the modal."""
        meta = json.loads(view.get("private_metadata") or "{}")
        exchange_id, channel, thread = str(meta.get("exchange", "")), str(meta.get("channel", "")), meta.get("thread")
        user, team = body["user"]["id"], _team(body)
        values = view["state"]["values"]
        answer = (values.get("answer", {}).get("text", {}).get("value") or "").strip()
        reason = ((values.get("reason", {}).get("choice", {}).get("selected_option")) or {}).get("value")
        said: list[str] = []
        if reason:  # the 👎's reason, on the vote already counted (the same user's vote, so the same rules)
            voted = self.core.handle(Vote(PLATFORM, exchange_id, user, -1, f"reason:{view.get('id', '')}", team,
                                          reason=str(reason)))  # fmt: skip
            said.append(f"Noted: {VOTE_REASONS.get(str(reason), reason).lower()}." if isinstance(voted, VoteResult)
                        else f"The reason was not kept: {getattr(voted, 'reason', 'not a vote')}.")  # fmt: skip
        if not answer:
            ack()
            if said:
                self.later(_tell, client, channel, user, thread or None, " ".join(said))
            return
        kind = self.channel_kind(client, channel)
        # Where the 👎 was clicked: the core corrects only a reply given there.
        outcome = self.core.handle(Correction(
            PLATFORM, exchange_id, user, answer, ConversationKey(PLATFORM, channel, thread or ""),
            workspace=team, is_dm=kind == "im", private_to=channel if kind in PRIVATE_KINDS else "",
        ))  # fmt: skip
        if isinstance(outcome, CommandResult) and not outcome.ok:
            ack(response_action="errors", errors={"answer": outcome.text})
            return
        ack()
        if isinstance(outcome, CommandResult):
            self.later(_tell, client, channel, user, thread or None, " ".join([*said, outcome.text]))


def correction_view(meta: dict[str, str], max_chars: int) -> dict[str, Any]:
    """The "What would be right?" modal; `meta` (the exchange, where it was asked) rides along."""
    return {
        "type": "modal",
        "callback_id": CORRECTION_VIEW,
        "private_metadata": json.dumps(meta),
        "title": {"type": "plain_text", "text": "What would be right?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "What is wrong with it?"},
                "element": {
                    "type": "radio_buttons",
                    "action_id": "choice",
                    "options": [
                        {"text": {"type": "plain_text", "text": label}, "value": value}
                        for value, label in VOTE_REASONS.items()
                    ],
                },
            },
            {
                "type": "input",
                "block_id": "answer",
                "optional": True,
                "label": {"type": "plain_text", "text": "The right answer"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "text",
                    "multiline": True,
                    "max_length": max_chars,
                },
            },
        ],
    }


def _team(body: dict[str, Any]) -> str:
    return (body.get("team") or {}).get("id") or body.get("user", {}).get("team_id") or ""


def _tell(client: WebClient, channel: str, user: str, thread_ts: str | None, text: str) -> None:
    """Only `user` sees it, where they clicked."""
    client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=to_slack(text))
