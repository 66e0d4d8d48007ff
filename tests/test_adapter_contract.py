"""The adapter contract, shown by a whole platform adapter in a few lines.

`MemoryChat` is what docs/adapters.md asks of a new platform (Teams, Matrix, Telegram): convert
its events into `Incoming` and `Reaction`, hand them to `core.handle`, show what comes back,
and give adapters/streaming.py a way to post, edit and delete a message. Its "platform" is a
list of messages in memory. Answers, votes, corrections and commands all go through the one
entry point, on the real core and stores (the model and embedder are fakes).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from adapters.provenance import Provenance
from adapters.streaming import ReplyOnScreen, ShowElsewhere, show_answer
from bot.core import Core
from bot.types import (
    Answering,
    CommandResult,
    ConversationKey,
    Correction,
    Ignored,
    Incoming,
    Outcome,
    Reaction,
    VoteResult,
    workspace_scope,
)
from tests.fakes import FakeEngine

PLATFORM = "memory"
ANSWER = "The office opens at 8."


@dataclass
class Posted:
    id: str
    text: str
    edits: int = 0
    buttons: str | None = None  # the exchange whose 👍/👎 are under it


@dataclass
class MemoryChat:
    """A chat platform in memory, and its adapter: everything below `handle` is translation."""

    core: Core
    messages: dict[str, Posted] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # the platform's side: posting, editing, deleting (streaming.Screen)
    def post(self, text: str, buttons: str | None = None) -> str:
        posted = Posted(f"m{next(self.ids)}", text, buttons=buttons)
        self.messages[posted.id] = posted
        return posted.id

    def edit(self, ref: str, text: str, buttons: str | None = None) -> None:
        self.messages[ref].text = text
        self.messages[ref].edits += 1
        self.messages[ref].buttons = buttons

    def delete(self, ref: str) -> None:
        del self.messages[ref]

    # the adapter: convert in, hand to the core, show what comes back
    def say(self, user: str, text: str, mention: bool = False, reply_to: str | None = None) -> Outcome:
        return self._show(
            self.core.handle(
                Incoming(
                    PLATFORM,
                    ConversationKey(PLATFORM, "room", reply_to or ""),
                    user,
                    text,
                    workspace="team",
                    mentions_bot=mention,
                    replies_to=reply_to,
                    event_id=f"msg:{next(self.ids)}",
                )
            )
        )

    def slash(self, user: str, line: str) -> Outcome:
        return self._show(self.core.handle(Incoming(PLATFORM, ConversationKey(PLATFORM, "room"), user, command=line)))

    def react(self, user: str, message_id: str, emoji: str, added: bool = True) -> Outcome:
        return self.core.handle(Reaction(PLATFORM, message_id, user, emoji, added))

    def _show(self, outcome: Outcome) -> Outcome:
        if isinstance(outcome, Answering):
            show_answer(self.core, outcome, [ReplyOnScreen(self, limit=40, interval_s=0.0)], PLATFORM)
        elif isinstance(outcome, CommandResult):
            self.post(outcome.text)
        return outcome


def chat(make_core) -> MemoryChat:
    core = make_core(FakeEngine(ANSWER))
    # A real platform adds its name to bot.config.PLATFORMS, so that BOT_ADMINS accepts its users
    # (and catches typos); this test's platform stays out of that list.
    core.settings = core.settings.model_copy(update={"admins": ["memory:boss"]})
    return MemoryChat(core)


def test_answers_stream_onto_the_platform_and_link_every_message(make_core) -> None:
    platform = chat(make_core)
    assert isinstance(platform.say("ann", "just chatting"), Ignored), "not addressed to the bot"
    outcome = platform.say("ann", "When does the office open?", mention=True)
    assert isinstance(outcome, Answering)
    [shown] = platform.messages.values()
    assert shown.text == ANSWER and shown.edits >= 1, "posted, then edited as the words came"
    exchange = platform.core.store.exchange_for_message(PLATFORM, shown.id)
    assert exchange is not None and platform.core.store.exchange(exchange).reply == ANSWER
    assert shown.buttons == exchange, "the finished reply carries its feedback buttons"
    assert platform.core.store.exchange(exchange).scope == workspace_scope(PLATFORM, "team")


def test_a_long_reply_is_split_at_the_platforms_limit(make_core) -> None:
    long_answer = "One sentence here. " * 6
    platform = MemoryChat(make_core(FakeEngine(long_answer)))
    platform.say("ann", "tell me everything", mention=True)
    parts = list(platform.messages.values())
    assert len(parts) > 1 and all(len(p.text) <= 40 for p in parts)
    assert " ".join(p.text for p in parts).split() == long_answer.split()
    exchanges = {platform.core.store.exchange_for_message(PLATFORM, p.id) for p in parts}
    assert len(exchanges) == 1 and None not in exchanges, "a vote on any part counts"


def test_votes_corrections_and_commands_go_through_the_same_entry_point(make_core) -> None:
    platform = chat(make_core)
    platform.say("ann", "When does the office open?", mention=True)
    [reply_id] = platform.messages
    own = platform.react("ann", reply_id, "👍🏽")  # skin tones are the core's to strip, on every platform
    assert isinstance(own, VoteResult) and own.score == 1 and not own.is_example, "the asker's own 👍 doesn't count"
    vote = platform.react("bob", reply_id, "+1::skin-tone-3")
    assert isinstance(vote, VoteResult) and vote.score == 2 and vote.is_example
    assert isinstance(platform.react("bob", reply_id, "🎉"), Ignored)

    pending = platform.say("bob", "correct: It opens at 9.", reply_to=reply_id)
    assert isinstance(pending, CommandResult) and "review" in pending.text
    accepted = platform.say("boss", "correct: It opens at 7:30.", reply_to=reply_id)
    assert isinstance(accepted, CommandResult) and "learned" in accepted.text
    assert [c.answer for c in platform.core.store.corrections("accepted")] == ["It opens at 7:30."]

    refused = platform.slash("bob", "teach Q? => A.")
    assert isinstance(refused, CommandResult) and not refused.ok and "admins only" in refused.text
    taught = platform.slash("boss", "teach Where is the kitchen? => Second floor.")
    assert isinstance(taught, CommandResult) and taught.ok
    assert any(e.output == "Second floor." for e in platform.core.examples.list())
    assert "Commands:" in platform.slash("bob", "help").text  # type: ignore[union-attr]


def test_a_retried_event_is_handled_once(make_core) -> None:
    platform = chat(make_core)
    event = Incoming(PLATFORM, ConversationKey(PLATFORM, "room"), "ann", "hello", mentions_bot=True, event_id="e1")
    first = platform.core.handle(event)
    assert isinstance(first, Answering)
    list(first.events)
    assert isinstance(platform.core.handle(event), Ignored)
    assert platform.core.store.count_exchanges() == 1


def test_a_correction_from_a_form_is_checked_where_it_was_sent(make_core) -> None:
    """A platform's form (a 👎's modal) names its exchange: the core corrects it only from the
    workspace the reply was given in, under the same rules as a `correct:` reply."""
    platform = chat(make_core)
    platform.say("ann", "When does the office open?", mention=True)
    [reply_id] = platform.messages
    exchange = platform.core.store.exchange_for_message(PLATFORM, reply_id)
    assert exchange is not None

    def form(user: str, text: str, workspace: str) -> Outcome:
        where = ConversationKey(PLATFORM, "room")
        return platform.core.handle(Correction(PLATFORM, exchange, user, text, where, workspace=workspace))

    elsewhere = form("bob", "It opens at 9.", "another team")
    assert isinstance(elsewhere, CommandResult) and not elsewhere.ok and "can't find" in elsewhere.text
    assert platform.core.store.corrections() == []
    empty = form("bob", "  ", "team")
    assert isinstance(empty, CommandResult) and not empty.ok and "empty" in empty.text
    pending = form("bob", "It opens at 9.", "team")
    assert isinstance(pending, CommandResult) and pending.ok and "review" in pending.text
    assert [c.answer for c in platform.core.store.corrections("pending")] == ["It opens at 9."]


class RefusingView(ReplyOnScreen):
    """A way of showing that cannot: like a Slack stream refused at its first append."""

    def __init__(self, chat: MemoryChat) -> None:
        super().__init__(chat, limit=40, interval_s=0.0)
        self.tries = 0

    def grow(self, text: str) -> None:
        self.tries += 1
        raise ShowElsewhere("refused")


def test_a_view_that_cannot_show_the_reply_hands_it_to_the_next_with_the_text_so_far(make_core) -> None:
    platform = chat(make_core)
    outcome = platform.core.handle(
        Incoming(PLATFORM, ConversationKey(PLATFORM, "room"), "ann", "hi", workspace="team", mentions_bot=True)
    )
    assert isinstance(outcome, Answering)
    refusing, editing = RefusingView(platform), ReplyOnScreen(platform, limit=40, interval_s=0.0)
    reply = show_answer(platform.core, outcome, [refusing, editing], PLATFORM)
    assert reply is not None and refusing.tries == 1, "tried once, then never again for this reply"
    [shown] = platform.messages.values()
    assert shown.text == ANSWER and shown.buttons == reply.exchange_id
    assert platform.core.store.exchange_for_message(PLATFORM, shown.id) == reply.exchange_id


def test_a_final_text_that_reads_as_already_shown_still_gets_its_buttons() -> None:
    chat = MemoryChat(core=None)  # type: ignore[arg-type]  # the screen alone
    view = ReplyOnScreen(chat, limit=40, interval_s=0.0)
    view.show("Final words.", wait=False)
    view.finish("Final words.", "x1", Provenance((), None))
    [shown] = chat.messages.values()
    assert (shown.text, shown.buttons, shown.edits) == ("Final words.", "x1", 1)
