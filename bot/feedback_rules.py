"""What feedback teaches, and whose counts: votes, corrections, taught answers, the examples they
make, who is an admin, where what a message teaches is seen, and which workspaces the bot serves
at all. The core holds them (`core.rules`) and hands every feedback event (`Reaction`, `Vote`,
`Correction`) to `FeedbackRules.handle`; adapters reach them only through `Core.handle`.

Nobody can make the bot say something to other people on their own: the asker's own 👍 doesn't
count (unless they are an admin), a vote never touches a taught, imported or accepted example,
and a non-admin's correction waits for an admin's review.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Sequence

from cachetools import LRUCache

from bot.config import Settings
from bot.ops import metrics
from bot.stores.examples import ExampleStore, example_id
from bot.stores.feedback import FeedbackStore
from bot.stores.records import Exchange
from bot.types import (
    UNSAFE,
    VOTE_REASONS,
    CommandResult,
    Correction,
    Feedback,
    Ignored,
    Incoming,
    Reaction,
    UserError,
    Vote,
    VoteResult,
    scope_of,
    workspace_scope,
)

log = logging.getLogger(__name__)

DEFAULT_UP = ("+1", "thumbsup", "👍")  # platforms without their own lists: the terminal
DEFAULT_DOWN = ("-1", "thumbsdown", "👎")
# Skin tones and the emoji presentation selector: 👍🏽 is still 👍 (Slack writes it +1::skin-tone-2).
_EMOJI_MODIFIERS = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f]")
REVIEW_PAGE = 10  # corrections per `feedback review` page: a page fits one Slack or Discord message
REVIEW_CHARS = 200  # a question or answer longer than this is shortened in the list


def vote_value(emoji: str, up: Sequence[str], down: Sequence[str]) -> int:
    """+1, -1 or 0 for an emoji as any platform names it."""
    name = _EMOJI_MODIFIERS.sub("", emoji.strip(":").split("::")[0])
    return 1 if name in up else -1 if name in down else 0


class FeedbackRules:
    """The feedback rules over the two stores; the core holds one (`core.rules`)."""

    def __init__(self, settings: Settings, examples: ExampleStore, store: FeedbackStore) -> None:
        self.settings = settings
        self.examples = examples
        self.store = store
        self._example_lock = threading.Lock()  # vote -> example upserts stay consistent
        # Workspaces not invited, each logged once (the most recent thousand: memory stays bounded).
        self._refused: LRUCache[tuple[str, str], bool] = LRUCache(1024)

    def invited(self, platform: str, workspace: str) -> bool:
        """Whether the bot serves this Slack workspace or Discord server (`slack.allowed_teams`,
        `discord.allowed_guilds`; unset: every one). A Discord DM has no server and is served;
        Slack names the workspace of a DM too. Elsewhere nothing is answered, stored or counted,
        and the first event of each such workspace is logged."""
        allowed = {"slack": self.settings.slack.allowed_teams, "discord": self.settings.discord.allowed_guilds}
        listed = allowed.get(platform)
        if not listed or (platform == "discord" and not workspace) or workspace in listed:
            return True
        if (platform, workspace) not in self._refused:
            self._refused[(platform, workspace)] = True
            log.warning("ignoring %s workspace %s: not in its allow-list (%s)", platform, workspace or "(none)",
                        "SLACK_ALLOWED_TEAMS" if platform == "slack" else "DISCORD_ALLOWED_GUILDS")  # fmt: skip
        return False

    def is_admin(self, platform: str, user_id: str, roles: Sequence[str] = (), server: str = "") -> bool:
        """A configured admin id, or (Discord) a holder of the admin role id in the configured server.

        `roles` are the caller's role ids in `server`, the server the request came from. A role
        elsewhere means nothing: anyone can create a role in a server of their own.
        """
        if f"{platform}:{user_id}" in self.settings.admins:
            return True
        section = getattr(self.settings, platform, None)
        admin_role = getattr(section, "admin_role", "")
        home = getattr(section, "guild_id", None)
        return bool(admin_role) and home is not None and server == str(home) and admin_role in roles

    # the events -----------------------------------------------------------------------------

    def handle(self, event: Feedback) -> VoteResult | CommandResult | Ignored:
        """What a reaction, a feedback button's click or a correction does; the core has already
        checked that the bot serves its workspace."""
        if isinstance(event, Reaction):
            return self._reaction(event)
        if isinstance(event, Vote):
            return self._button_vote(event)
        return self._correction(event)

    def admit(self, event: Incoming | Feedback) -> Incoming | Feedback | Ignored:
        """The event as the core handles it: Ignored from a workspace the bot does not serve, a
        message read as the feedback it may be (`read_message`), anything else as it is."""
        if not self.invited(event.platform, event.workspace):
            return Ignored("a workspace the bot is not invited to")  # before anything is stored
        if isinstance(event, Incoming) and event.command is None:
            return self.read_message(event)
        return event

    def read_message(self, event: Incoming) -> Incoming | Correction:
        """A message as the feedback it may be: `correct: …` in reply to one of the bot's answers
        or, in a thread, about the bot's latest answer there, is a `Correction`. Otherwise the
        message, marked `replies_to_bot` when it replies to a message that shows a reply."""
        replied = self.store.exchange_for_message(event.platform, event.replies_to) if event.replies_to else None
        if replied is not None and not event.replies_to_bot:
            event = dataclasses.replace(event, replies_to_bot=True)
        text, prefix = event.text.strip(), self.settings.correction_prefix
        if not text.lower().startswith(prefix.lower()) or not (event.replies_to_bot or event.in_thread):
            return event
        # A reply to the bot whose answer is unknown still is a correction: it is told so.
        target = replied or (None if event.replies_to_bot else self.store.latest_exchange(event.conversation))
        if target is None and not event.replies_to_bot:
            return event  # `correct:` in a thread the bot has not answered in: an ordinary message
        return Correction(event.platform, target or "", event.user_id, text[len(prefix) :].strip(),
                          event.conversation, event.workspace, event.roles, event.is_dm, event.private_to,
                          event.event_id)  # fmt: skip

    def _reaction(self, event: Reaction) -> VoteResult | Ignored:
        if not self.store.claim_event(event.platform, event.event_id):
            return Ignored("a retry of a reaction already counted")
        try:
            result = self.react(event.platform, event.message_ref, event.user_id, event.emoji, event.added)
        except UserError as exc:
            return Ignored(str(exc))
        return result if result is not None else Ignored("not a vote on a reply")

    def _button_vote(self, event: Vote) -> VoteResult | Ignored:
        if event.value not in (1, -1) or (event.reason is not None and event.reason not in VOTE_REASONS):
            return Ignored("not a vote")
        exchange = self.store.exchange(event.exchange_id)
        if exchange is None or exchange.platform != event.platform:
            return Ignored("not a reply of this platform")
        if exchange.stopped:
            return Ignored("a reply stopped before it was finished takes no votes")
        # A button names its exchange, and anyone can post a button that names any exchange: the
        # message clicked must be one that shows that reply, and the click must come from its place.
        if event.message_ref and self.store.exchange_for_message(event.platform, event.message_ref) != exchange.id:
            return Ignored("a button on a message that does not show its reply")
        if exchange.scope.count(":") == 1 and exchange.scope != workspace_scope(event.platform, event.workspace):
            return Ignored("a reply in another workspace")
        if exchange.scope.startswith(f"{event.platform}:dm:") and event.platform == "discord" and event.workspace:
            return Ignored("a reply in a DM, clicked in a server")  # a Discord DM has no server
        if not self.store.claim_event(event.platform, event.event_id):
            return Ignored("a retry of a vote already counted")
        return self._vote(exchange, event.platform, event.user_id, event.value, event.reason)

    def _correction(self, event: Correction) -> CommandResult | Ignored:
        if not self.store.claim_event(event.platform, event.event_id):
            return Ignored("a retry of a correction already handled")
        if not event.exchange_id:
            return CommandResult("I can't find the answer you are correcting; reply to one of my answers.", ok=False)
        try:
            return self.correct(event.platform, event.user_id, event.exchange_id, event.text, scope_of(event),
                                event.roles, event.workspace)  # fmt: skip
        except UserError as exc:
            return CommandResult(str(exc), ok=False)

    # votes ------------------------------------------------------------------------------------

    def vote(self, exchange_id: str, platform: str, user_id: str, value: int) -> VoteResult:
        """+1, -1, or 0 to retract. The reply becomes an example of its scope at the threshold.

        The asker's own 👍 counts only if they are listed in BOT_ADMINS (who could teach it anyway),
        so no user can make the bot repeat something to others on their own.
        """
        exchange = self.store.exchange(exchange_id)
        if exchange is None:
            raise UserError(f"no exchange {exchange_id!r}")
        return self._vote(exchange, platform, user_id, value)

    def _vote(
        self, exchange: Exchange, platform: str, user_id: str, value: int, reason: str | None = None
    ) -> VoteResult:
        with self._example_lock:
            score = self.store.set_vote(exchange.id, platform, user_id, value, reason)  # queues the example sync
            metrics.VOTES.labels({1: "up", -1: "down"}.get(value, "retracted")).inc()
            is_example = self._sync_vote_example(exchange)
        return VoteResult(exchange.id, score, is_example)

    def _sync_vote_example(self, exchange: Exchange) -> bool:
        """Make the example store agree with the exchange's votes; True when it is an example.

        A vote only ever adds a new example or removes one its own exchange's votes added:
        taught, imported and accepted examples keep their label and provenance whatever users vote.
        """
        promoted = self._promoted(exchange)
        if promoted:
            self.examples.add_if_new(exchange.user_text, exchange.reply, "vote", exchange.id, exchange.scope)
        else:
            found = self.examples.get([example_id(exchange.user_text, exchange.reply, exchange.scope)])
            if found and found[0].source == "vote" and found[0].exchange_id == exchange.id:
                self.examples.remove([found[0].id])
        self.store.example_synced("exchange", exchange.id)
        return promoted

    def _promoted(self, exchange: Exchange) -> bool:
        if exchange.stopped or self.store.reasons(exchange.id).get(UNSAFE):
            return False  # a part-written reply, or one somebody flagged unsafe, is never an example
        asker_counts = self.is_admin(exchange.platform, exchange.user_id)
        score = self.store.promotion_score(exchange.id, exchange.platform, exchange.user_id, asker_counts)
        return score >= self.settings.vote_threshold

    def _sync_correction_example(self, correction_id: str) -> None:
        """Put an accepted correction (or a taught answer) into the example store; idempotent."""
        correction = self.store.correction(correction_id)
        if correction is not None and correction.status == "accepted":
            exchange = self.store.exchange(correction.exchange_id) if correction.exchange_id else None
            if exchange is None:  # taught by an admin: seen everywhere
                self.examples.add(correction.question, correction.answer, "good", "taught", correction.id)
            else:  # a correction of a reply: seen where the reply was
                self.examples.add(
                    correction.question, correction.answer, "good", "correction", exchange.id, exchange.scope
                )
        self.store.example_synced("correction", correction_id)

    def repair_examples(self) -> int:
        """Write the examples that feedback stored durably but a crash or an example-store failure
        kept from the example store (the feedback store records them until done). Returns how many."""
        repaired = 0
        for kind, ref in self.store.pending_example_syncs():
            try:
                with self._example_lock:
                    if kind != "exchange":
                        self._sync_correction_example(ref)
                    elif (exchange := self.store.exchange(ref)) is not None:
                        self._sync_vote_example(exchange)
                    else:  # deleted since: nothing to write
                        self.store.example_synced("exchange", ref)
                repaired += 1
            except Exception:
                log.exception("could not repair the example of %s %s; will retry at the next start", kind, ref)
        if repaired:
            log.info("repaired %d example(s) that feedback had recorded", repaired)
        return repaired

    def react(self, platform: str, message_ref: str, user_id: str, emoji: str, added: bool) -> VoteResult | None:
        """A reaction on a platform message; None when it is not a vote on a bot reply."""
        value = self._vote_value(platform, emoji)
        if value == 0:
            return None
        exchange_id = self.store.exchange_for_message(platform, message_ref)
        exchange = self.store.exchange(exchange_id) if exchange_id is not None else None
        if exchange is None or exchange.stopped:
            return None
        if not added:
            # Removing 👍 retracts only a 👍: a user who switched to 👎 keeps their 👎.
            if self.store.user_vote(exchange.id, platform, user_id) != value:
                return VoteResult(exchange.id, self.store.score(exchange.id), self._promoted(exchange))
            value = 0
        return self._vote(exchange, platform, user_id, value)

    def _vote_value(self, platform: str, emoji: str) -> int:
        section = getattr(self.settings, platform, None)
        up = getattr(section, "up_emoji", DEFAULT_UP)
        down = getattr(section, "down_emoji", DEFAULT_DOWN)
        return vote_value(emoji, up, down)

    def correct(
        self,
        platform: str,
        user_id: str,
        exchange_id: str,
        text: str,
        scope: str,
        roles: Sequence[str] = (),
        server: str = "",
    ) -> CommandResult:
        """`text`, a better answer for a reply: counts at once from an admin, waits for review otherwise.

        `scope` is the caller's (`scope_of`): a reply reached from elsewhere (a forwarded message,
        a reference across servers, a form opened from another workspace) is not theirs to correct."""
        answer = text.strip()
        if not answer:
            raise UserError(f"the correction is empty; write `{self.settings.correction_prefix} <the better answer>`")
        self._check_length(answer)
        exchange = self.store.exchange(exchange_id)
        if exchange is None or exchange.scope != scope:
            raise UserError("I can't find that answer here; reply to one of my answers in this conversation.")
        is_admin = self.is_admin(platform, user_id, roles, server)
        cap = self.settings.max_pending_corrections_per_user
        if not is_admin and self.store.count_pending_corrections(platform, user_id) >= cap:
            raise UserError(
                f"You already have {cap} correction{'s' if cap > 1 else ''} waiting for an admin's review; "
                "please wait until they are reviewed before sending more."
            )
        correction = self.store.add_correction(
            exchange_id, platform, user_id, exchange.user_text, answer, accepted_by=user_id if is_admin else None
        )
        metrics.CORRECTIONS.labels("accepted" if is_admin else "pending").inc()
        if is_admin:
            with self._example_lock:
                self._sync_correction_example(correction.id)
            return CommandResult(
                f"Thanks, learned: the answer to {exchange.user_text!r} is now yours.", ephemeral=False
            )
        return CommandResult(
            f"Thanks, your correction {correction.id} is waiting for an admin's review.", ephemeral=False
        )

    def _check_length(self, answer: str) -> None:
        """Refuse an answer over `max_correction_chars`: one user's long ones would fill every review."""
        limit = self.settings.max_correction_chars
        if len(answer) > limit:
            raise UserError(
                f"That answer is {len(answer)} characters; answers are limited to {limit} "
                "(`max_correction_chars`). Please shorten it."
            )

    def teach(self, platform: str, user_id: str, question: str, answer: str) -> str:
        self._check_length(answer)
        correction = self.store.add_correction(None, platform, user_id, question, answer, accepted_by=user_id)
        metrics.CORRECTIONS.labels("taught").inc()
        with self._example_lock:
            self._sync_correction_example(correction.id)
        return example_id(question, answer)

    def review_text(self, page: int = 1) -> str:
        """One page of the pending corrections, oldest first, each shortened to fit a chat message."""
        pending = self.store.corrections("pending")
        reasons = self.store.reasons()
        why = "👎 reasons: " + ", ".join(f"{VOTE_REASONS.get(r, r).lower()} {n}" for r, n in reasons.items())
        why += " (unsafe answers never become examples or training rows)." if reasons.get(UNSAFE) else "."
        if not pending:
            return "No corrections are waiting for review." + (f"\n{why}" if reasons else "")
        pages = -(-len(pending) // REVIEW_PAGE)
        if not 1 <= page <= pages:
            raise UserError(f"there is no page {page}: {len(pending)} correction(s) fit on {pages} page(s)")
        shown = pending[(page - 1) * REVIEW_PAGE : page * REVIEW_PAGE]
        lines = [f"{len(pending)} correction(s) waiting (accept with `feedback accept ID`):"]
        for c in shown:
            lines.append(f"  {c.id}  by {c.platform}:{c.user_id}")
            lines.append(f"    Q: {_short(c.question)}\n    A: {_short(c.answer)}")
        if pages > 1:
            more = f"; `feedback review {page + 1}` for the next" if page < pages else ""
            lines.append(f"Page {page} of {pages}{more}.")
        return "\n".join(lines + ([why] if reasons else []))

    def review(self, correction_id: str, accept: bool, reviewer: str) -> CommandResult:
        correction = self.store.review_correction(correction_id, accept, reviewer)
        if correction is None:
            raise UserError(f"no pending correction {correction_id!r}; see `feedback review`")
        if accept:
            with self._example_lock:
                self._sync_correction_example(correction.id)
            return CommandResult(f"Accepted {correction.id}: it is now an example.")
        return CommandResult(f"Rejected {correction.id}.")


def _short(text: str) -> str:
    return text if len(text) <= REVIEW_CHARS else text[: REVIEW_CHARS - 1].rstrip() + "…"
