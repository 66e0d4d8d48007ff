"""Values that cross every boundary: adapters -> core -> stores -> adapters.

They are plain frozen dataclasses so that the core imports nothing heavy and adapters can build
them without knowing anything about models or databases.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConversationKey:
    """Where a conversation lives: (platform, channel, thread). The thread is '' when there is none."""

    platform: str
    channel: str
    thread: str = ""

    def as_str(self) -> str:
        return f"{self.platform}:{self.channel}:{self.thread}"

    @classmethod
    def parse(cls, text: str) -> ConversationKey:
        platform, channel, thread = text.split(":", 2)
        return cls(platform, channel, thread)


# The terminal chat and the CLI: run by whoever owns the data directory, on its machine.
LOCAL_PLATFORMS = ("console", "cli")
WEB_PLATFORM = "web"  # the admin console (bot/web/): its callers are `web:<name>`
# Retrieval scope of examples that every conversation sees (imported, admin-taught).
GLOBAL_SCOPE = ""
# The terminal chat and the CLI: one person, the owner of the data directory.
LOCAL_SCOPE = "local"
# A scope that sees every example: for evaluation and the training gate, never for users.
ALL_SCOPES = "*"


def workspace_scope(platform: str, workspace: str) -> str:
    """What a Slack workspace or a Discord server learns from votes and corrections stays there."""
    return f"{platform}:{workspace}"


def dm_scope(platform: str, channel: str) -> str:
    """What a DM (or a private channel or thread) learns stays there."""
    return f"{platform}:dm:{channel}"


@dataclass(frozen=True)
class Message:
    """One incoming user message, already translated out of the platform's event.

    `scope` says which learned examples this message may see and where what it teaches is seen:
    the adapter sets the workspace/server or DM scope; left empty, it is the narrowest safe one,
    the message's own channel.
    """

    conversation: ConversationKey
    user_id: str
    text: str
    user_name: str = ""
    scope: str = ""
    workspace: str = ""  # the workspace or server it came from, for fair shares ("": a DM outside one, the terminal)

    def __post_init__(self) -> None:
        if not self.scope:
            object.__setattr__(self, "scope", f"{self.conversation.platform}:{self.conversation.channel}")

    @property
    def platform(self) -> str:
        return self.conversation.platform


@dataclass(frozen=True)
class Incoming:
    """A platform event as every adapter hands it to `Core.handle`: a message or a command.

    Adapters fill in the facts they can read from the platform and decide nothing: whether the
    bot is addressed, whether it is a correction, what scope it teaches, are the core's rules.
    `replies_to` is the platform's reference (the `message_ref` form) of the message this one
    replies to; `replies_to_bot` is set when the platform says that message is the bot's (the core
    also knows every message that shows one of its replies). A command is `command` as a text line
    ("lora use v0003"), or its name with `command_args` when the platform sends typed options.
    """

    platform: str
    conversation: ConversationKey
    user_id: str
    text: str = ""
    user_name: str = ""
    workspace: str = ""  # Slack team, Discord server; '' in a DM
    roles: tuple[str, ...] = ()  # the caller's role ids in `workspace` (Discord)
    is_dm: bool = False
    # In a place only some of the workspace can read (a private channel, a group DM, a private
    # thread): its id. What a message there teaches stays there, as a DM's does.
    private_to: str = ""
    mentions_bot: bool = False
    in_thread: bool = False  # a thread the platform keeps (Slack, Discord threads)
    replies_to: str | None = None
    replies_to_bot: bool = False
    event_id: str = ""  # the platform's id for dedup of retries and replays ('' = none)
    command: str | None = None
    command_args: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Reaction:
    """An emoji added to or removed from a message; the core decides whether it is a vote."""

    platform: str
    message_ref: str
    user_id: str
    emoji: str  # as the platform names it: "+1::skin-tone-2", "👍🏽", a custom emoji's name
    added: bool
    event_id: str = ""
    workspace: str = ""  # Slack team, Discord server; '' in a DM


@dataclass(frozen=True)
class Vote:
    """A feedback button under a reply (👍 +1, 👎 -1): its exchange is named by the button itself
    (Slack: the action's value; Discord: the component's custom id), so it needs no message lookup
    and survives a restart. Counted as reactions are: one vote per user per reply, the last wins."""

    platform: str
    exchange_id: str
    user_id: str
    value: int
    event_id: str = ""
    workspace: str = ""  # Slack team, Discord server; '' in a DM
    message_ref: str = ""  # the message the button was clicked on (as linked to its exchange)
    reason: str | None = None  # why a 👎 (one of VOTE_REASONS), given in its form; None: not said (yet)


@dataclass(frozen=True)
class Correction:
    """A better answer for one of the bot's replies: a `correct: …` reply to it, or the text of a
    platform's form (a 👎's "What would be right?" modal, which names its exchange). Where it was
    sent (`conversation`, `workspace`, `is_dm`, `private_to`, as on `Incoming`) is where the
    corrected reply must have been given; the core decides that, and who may correct what."""

    platform: str
    exchange_id: str  # '' when a `correct:` reply names no answer the bot knows
    user_id: str
    text: str  # the better answer, without the correction prefix
    conversation: ConversationKey
    workspace: str = ""
    roles: tuple[str, ...] = ()
    is_dm: bool = False
    private_to: str = ""
    event_id: str = ""


# Why a 👎: what reviewers filter on. An answer flagged "unsafe" never becomes an example or a training row.
VOTE_REASONS = {"wrong": "Wrong fact", "outdated": "Outdated", "unhelpful": "Not helpful", "unsafe": "Unsafe"}
UNSAFE = "unsafe"

# What users say about replies; `FeedbackRules.handle` decides each.
Feedback = Reaction | Vote | Correction


def scope_of(event: Incoming | Correction) -> str:
    """Where what an event teaches is seen: its workspace or server, its DM or private place, or
    the terminal. A correction is checked against it: a reply given elsewhere is not the caller's."""
    if event.platform in LOCAL_PLATFORMS:
        return LOCAL_SCOPE
    if event.is_dm:
        return dm_scope(event.platform, event.conversation.channel)
    if event.private_to:
        return dm_scope(event.platform, event.private_to)
    return workspace_scope(event.platform, event.workspace or event.conversation.channel)


@dataclass(frozen=True)
class Ignored:
    """The core's decision that an event needs nothing from the bot."""

    reason: str


@dataclass(frozen=True)
class Answering:
    """The core's decision to answer: iterate `events` (it blocks while the model writes) off any
    thread or event loop that must stay responsive. Setting `stop` (from any thread: a platform's
    Stop button) ends the reply at its next token; it is then stored and shown as stopped."""

    message: Message
    events: Iterator[StreamEvent] = field(compare=False)
    stop: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True)
class ReplyStats:
    """A reply's measurements, from the worker that wrote it to the exchange stored for it (the
    exchanges table has a column of each name)."""

    latency_s: float  # to the whole reply: the core's Reply counts from the message's arrival
    first_token_s: float | None  # from the moment the worker started writing it (None: no text came)
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Reply:
    """What the core returns for a message; everything needed to trace it back."""

    text: str
    exchange_id: str
    lora_version: str | None
    example_ids: tuple[str, ...]
    stats: ReplyStats
    stopped: bool = False  # the asker stopped it: `text` is what was written until then; it takes no votes


@dataclass(frozen=True)
class Looked:
    """Stream event, first: the verified examples in the reply's prompt (its `example_ids`, in that
    order) and the LoRA version serving now (None: the base model)."""

    examples: tuple[Example, ...]
    lora_version: str | None


@dataclass(frozen=True)
class Queued:
    """Stream event: the request waits behind `position` others."""

    position: int


@dataclass(frozen=True)
class Token:
    """Stream event: new reply text (a delta, not the whole text so far)."""

    text: str


@dataclass(frozen=True)
class Done:
    """Stream event: the reply is complete and stored."""

    reply: Reply


StreamEvent = Looked | Queued | Token | Done


@dataclass(frozen=True)
class Example:
    """A labeled (input, output) pair in the example store."""

    id: str
    input: str
    output: str
    label: str = "good"
    source: str = "import"
    created_at: float = 0.0
    exchange_id: str | None = None
    similarity: float | None = None  # set only on retrieval results
    scope: str = GLOBAL_SCOPE


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation's history, as the prompt and the training rows carry it."""

    user: str
    assistant: str


@dataclass(frozen=True)
class VoteResult:
    """The outcome of a vote: the exchange's net score and whether it is now a good example."""

    exchange_id: str
    score: int
    is_example: bool


@dataclass(frozen=True)
class CommandResult:
    """The answer to a slash/admin command.

    `ephemeral` asks the adapter to show it only to the caller. `followup`, when set, completes
    later (a training run) with text that the adapter posts in the channel where it was asked.
    """

    text: str
    ephemeral: bool = True
    ok: bool = True
    followup: Future[str] | None = field(default=None, compare=False)
    data: Any = field(default=None, compare=False)  # the result for scripts (`bot status --json`)


# What Core.handle decides for an event: nothing, an answer to stream, a command's or a
# correction's result, or a vote's.
Outcome = Ignored | Answering | CommandResult | VoteResult


@dataclass(frozen=True)
class LoraVersion:
    """One trained LoRA in the registry."""

    version: str
    path: str
    created_at: float
    status: str  # "candidate", "active", "previous", "retired"
    manifest: dict = field(default_factory=dict, compare=False)


class UserError(ValueError):
    """Something the user did wrong; the message is safe and meant to be shown to them as is."""
