"""What the Slack adapter writes: escaped text, Markdown, and the feedback buttons under a reply.

A reply goes out twice in one message: `text`, mrkdwn (what notifications and old clients show),
and a `markdown` block (or a stream's `markdown_text`), which Slack renders as Markdown: `**bold**`,
headings, lists, tables. In both, `&`, `<` and `>` are escaped, `@here`, `@channel` and
`@everyone` are broken by a word joiner, and Markdown links lose their syntax (adapters/text.py), so
nothing the model writes can ping a channel, mention someone, forge a link or hide a link's address.
"""

from __future__ import annotations

import re
from typing import Any

from adapters.provenance import Provenance
from adapters.text import plain_links

FEEDBACK_ACTION = "feedback"  # the action_id of the buttons (app.action)
UP, DOWN = "up", "down"  # a button's value is "up:<exchange id>" or "down:<exchange id>"
_BROADCAST = re.compile(r"@(here|channel|everyone)\b", re.IGNORECASE)
_WORD_JOINER = "\u2060"  # invisible, and no mention parser sees "@\u2060here" as one


def to_slack(text: str) -> str:
    """Escape &, < and >, Slack's control characters, break @here, @channel and @everyone, and show
    Markdown links' addresses: a reply must never ping, forge or disguise a link or mention anyone,
    whatever the model writes. The same
    text is mrkdwn and Markdown, and pieces cut at whitespace convert to the same as the whole
    (a stream appends such pieces)."""
    escaped = plain_links(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub(lambda m: "@" + _WORD_JOINER + m.group(1), escaped)


def from_slack(text: str) -> str:
    """Slack sends &, < and > escaped in message and command text; the core gets plain text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def context_footer(about: Provenance) -> str:
    """Where a reply came from, as its last line (the edit-based view's form of the stream's steps);
    nothing for the base model with no verified answer."""
    return f"\n\n📚 {about.line()}" if about.worth_showing else ""


def task_chunk(task: str, title: str, status: str, details: str = "") -> dict[str, Any]:
    """A `task_update` chunk of a stream: one step shown above the answer."""
    chunk = {"type": "task_update", "id": task, "title": title, "status": status}
    return chunk | ({"details": to_slack(details)[:256]} if details else {})


def message_ref(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


def feedback_block(exchange_id: str) -> dict[str, Any]:
    """👍/👎 under a finished reply. The values name the exchange: the buttons need no state in the
    bot and keep working across restarts."""
    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_ACTION,
                "positive_button": {
                    "text": {"type": "plain_text", "text": "👍"},
                    "accessibility_label": "This answer is good",
                    "value": f"{UP}:{exchange_id}",
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": "👎"},
                    "accessibility_label": "This answer is wrong",
                    "value": f"{DOWN}:{exchange_id}",
                },
            }
        ],
    }


def message_body(text: str, exchange_id: str | None = None) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments that show `text`, with the buttons when it is the
    last message of a finished reply (`exchange_id`)."""
    shown = to_slack(text)
    blocks: list[dict[str, Any]] = [{"type": "markdown", "text": shown}]
    if exchange_id:
        blocks.append(feedback_block(exchange_id))
    return {"text": shown, "blocks": blocks}


def parse_vote(value: str) -> tuple[int, str]:
    """(+1 or -1, exchange id) from a button's value; (0, '') for anything else."""
    kind, _, exchange_id = value.partition(":")
    return {UP: 1, DOWN: -1}.get(kind, 0) if exchange_id else 0, exchange_id
