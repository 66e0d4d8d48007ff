"""Which good examples train the shared LoRA, ranked by who vouched for them.

One LoRA serves every workspace, so what it learns must not be decided by whoever happens to vote
in any of them. Per question, an answer somebody trusted gave (taught by an admin, imported by the
operator, a correction an admin made or accepted) outranks any vote-made one, whatever its age;
among answers of the same rank the newest wins. A vote-made example trains only when it comes
from a scope the operator lets train (`training.vote_scopes`; by default the Discord home server,
the allowed Slack workspaces, the terminal, and DMs with admins) or when enough distinct people
other than the asker upvoted it (`training.vote_min_voters`). Retrieval is not affected: each
workspace still sees its own voted examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.types import LOCAL_SCOPE, UNSAFE, Example

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.stores.feedback import FeedbackStore
    from bot.stores.records import Exchange

# Sources whose answer a trusted person gave ("import:FILE" too); every other ("vote") users' votes made.
VOUCHED = ("taught", "import", "correction")


def vouched(example: Example) -> bool:
    return example.source.split(":")[0] in VOUCHED


@dataclass(frozen=True)
class LeftOut:
    """A good example that does not train, and why (shown by `feedback export` and in the counts)."""

    example: Example
    why: str


def text_key(text: str) -> str:
    """A text as it compares with another: case and spacing ignored (one answer, however typed)."""
    return " ".join(text.lower().split())


def home_scopes(settings: Settings) -> set[str]:
    """The scopes whose votes train when `training.vote_scopes` is not set."""
    scopes = {LOCAL_SCOPE}
    if settings.discord.guild_id is not None:
        scopes.add(f"discord:{settings.discord.guild_id}")
    scopes.update(f"slack:{team}" for team in settings.slack.allowed_teams)
    return scopes


def vote_trains(example: Example, settings: Settings, store: FeedbackStore | None) -> str | None:
    """None when a vote-made example may train the shared LoRA, else why not."""
    exchange = store.exchange(example.exchange_id) if store is not None and example.exchange_id else None
    return votes_train(example.scope, exchange, 1, settings, store)


def votes_train(
    scope: str, exchange: Exchange | None, value: int, settings: Settings, store: FeedbackStore | None
) -> str | None:
    """None when the 👍 (`value` 1) or 👎 (-1) votes on `exchange`, given in `scope`, may train the
    shared LoRA: from a scope that trains, a DM with an admin, or enough voters (`training.vote_min_voters`;
    for 👍 people other than the asker); else why not. An answer flagged unsafe never trains."""
    if exchange is not None and store is not None and store.reasons(exchange.id).get(UNSAFE):
        return "flagged unsafe by a 👎"
    if scope in (set(settings.training.vote_scopes) or home_scopes(settings)):
        return None
    if exchange is None:
        return f"voted in {scope or 'an unknown scope'}, not a scope that trains (training.vote_scopes)"
    asker = f"{exchange.platform}:{exchange.user_id}"
    if scope.startswith(f"{exchange.platform}:dm:") and asker in settings.admins:
        return None  # a DM with an admin: an admin could have taught it
    # An asker's own 👍 does not count (it would promote their own question); their 👎 does.
    voters = store.voters(exchange.id, value) if store is not None else set()
    others = voters - {(exchange.platform, exchange.user_id)} if value > 0 else voters
    needed = settings.training.vote_min_voters
    if needed and len(others) >= needed:
        return None
    return (f"voted in {scope}, not a scope that trains (training.vote_scopes), by {len(others)} "
            f"voter(s) (training.vote_min_voters = {needed})")  # fmt: skip


def downvote_trains(
    exchange: Exchange, vouched_answers: set[str], settings: Settings, store: FeedbackStore
) -> str | None:
    """None when a downvoted reply may become an undesirable (KTO) row, else why not: never against an
    answer somebody trusted gave, and only as far as the votes would make an example (`votes_train`)."""
    if text_key(exchange.reply) in vouched_answers:
        return "a 👎 on a vouched-for answer (taught, imported or an accepted correction)"
    return votes_train(exchange.scope, exchange, -1, settings, store)


def training_examples(
    good: Sequence[Example], settings: Settings, store: FeedbackStore | None
) -> tuple[list[Example], list[LeftOut]]:
    """One example per question: the vouched-for answer over any vote-made one, the newest of the
    same rank; vote-made ones only where `vote_trains`. `good` is oldest first."""
    chosen: dict[str, Example] = {}
    left_out: list[LeftOut] = []
    for example in good:
        if not vouched(example) and (why := vote_trains(example, settings, store)) is not None:
            left_out.append(LeftOut(example, why))
            continue
        key = text_key(example.input)
        held = chosen.get(key)
        if held is not None and vouched(held) != vouched(example):  # the vouched-for one stays, whatever its age
            loser, winner = (example, held) if vouched(held) else (held, example)
            left_out.append(LeftOut(loser, f"a vouched-for answer to the same question ({winner.source})"))
            if loser is example:
                continue
        chosen[key] = example
    return list(chosen.values()), left_out
