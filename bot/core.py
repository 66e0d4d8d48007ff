"""The one orchestrator: answers, feedback, and the command set every adapter shares.

It returns values and never talks to a chat platform; adapters do the sending. It is
synchronous and thread-safe; generation itself is serialized by the GenerationService.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot import admin
from bot.config import LOCAL_PLATFORMS, Settings
from bot.decoding import favored_tokens
from bot.feedback import Exchange, FeedbackStore
from bot.generation import Generated, GenerationService, ReplyHints
from bot.prompt import build_prompt
from bot.queueing import PerOwnerLimit
from bot.retrieval import ExampleStore, example_id
from bot.types import (
    CommandResult,
    ConversationKey,
    Done,
    Example,
    Message,
    Queued,
    Reply,
    StreamEvent,
    Token,
    UserError,
    VoteResult,
)

if TYPE_CHECKING:
    from bot.lora_registry import LoraRegistry
    from bot.training_runner import TrainingRunner

log = logging.getLogger(__name__)


class Core:
    def __init__(
        self,
        settings: Settings,
        generation: GenerationService,
        examples: ExampleStore,
        store: FeedbackStore,
        registry: LoraRegistry | None = None,
        trainer: TrainingRunner | None = None,
    ) -> None:
        self.settings = settings
        self.generation = generation
        self.examples = examples
        self.store = store
        self.registry = registry
        self.trainer = trainer
        self._example_lock = threading.Lock()  # vote -> example upserts stay consistent
        self._in_flight = PerOwnerLimit(settings.max_waiting_per_user)

    # answering ---------------------------------------------------------------------------------

    def answer_stream(self, message: Message) -> Iterator[StreamEvent]:
        """Queued(position)*, Token(delta)*, then Done(reply) once the exchange is stored.

        A user who already has `max_waiting_per_user` requests waiting or running gets a
        UserError before anything is retrieved, queued or stored.
        """
        owner = f"{message.platform}:{message.user_id}"
        if not self._in_flight.acquire(owner):
            waiting = self._in_flight.limit
            raise UserError(
                f"You already have {waiting} question{'s' if waiting > 1 else ''} waiting; I'll get to them"
                " — please wait for an answer before asking more."
            )
        try:
            yield from self._answer_stream(message, owner)
        finally:  # also when the caller abandons the stream
            self._in_flight.release(owner)

    def _reply_hints(self, retrieved: Sequence[Example], in_prompt: tuple[str, ...]) -> ReplyHints:
        """How this reply is written: which tokens the answer bias favours, and with which model."""
        favored: tuple[int, ...] = ()
        if self.settings.answer_bias and retrieved and in_prompt[:1] == (retrieved[0].id,):
            favored = tuple(favored_tokens(self.generation.tokenizer, retrieved[0].output))
        # A LoRA is trained to answer from the verified answers in its prompt (bot/dataset.py); without
        # one, the base model answers, so a LoRA can't cost the general answers it was never meant for.
        base_only = self.settings.lora_for == "examples" and not in_prompt
        return ReplyHints(favored, base_only)

    def _answer_stream(self, message: Message, owner: str) -> Iterator[StreamEvent]:
        text = message.text.strip()
        if not text:
            raise UserError("the message is empty")
        if len(text) > self.settings.max_message_chars:
            raise UserError(f"the message has {len(text)} characters; the limit is {self.settings.max_message_chars}")
        started = time.monotonic()
        settings = self.settings
        examples = self.examples.retrieve(
            text, settings.retrieval_k, settings.min_similarity, settings.dedup_similarity, message.scope
        )
        history = self.store.history(message.conversation, settings.history_turns)
        try:
            prompt = build_prompt(
                self.generation.tokenizer,
                settings.system_prompt,
                examples,
                history,
                text,
                budget_tokens=settings.context_tokens - settings.max_new_tokens,
                layout=settings.example_layout,
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None
        hints = self._reply_hints(examples, prompt.example_ids)
        for event in self.generation.stream(owner, prompt.input_ids, settings.max_new_tokens, hints):
            if isinstance(event, (Queued, Token)):
                yield event
            elif isinstance(event, Generated):
                latency = time.monotonic() - started
                exchange_id = self.store.add_exchange(
                    conversation=message.conversation,
                    user_id=message.user_id,
                    user_text=text,
                    reply=event.text,
                    prompt=prompt.messages,
                    example_ids=prompt.example_ids,
                    lora_version=event.lora_version,
                    latency_s=latency,
                    first_token_s=event.first_token_s,
                    prompt_tokens=event.prompt_tokens,
                    completion_tokens=event.completion_tokens,
                    scope=message.scope,
                )
                yield Done(
                    Reply(
                        text=event.text,
                        exchange_id=exchange_id,
                        lora_version=event.lora_version,
                        example_ids=prompt.example_ids,
                        latency_s=latency,
                        first_token_s=event.first_token_s,
                        prompt_tokens=event.prompt_tokens,
                        completion_tokens=event.completion_tokens,
                    )
                )

    def answer(self, message: Message) -> Reply:
        for event in self.answer_stream(message):
            if isinstance(event, Done):
                return event.reply
        raise RuntimeError("generation ended without a reply")

    # conversation state ------------------------------------------------------------------------

    def reset(self, conversation: ConversationKey) -> None:
        self.store.reset(conversation)

    def knows_conversation(self, conversation: ConversationKey) -> bool:
        return self.store.has_history(conversation)

    def claim_event(self, platform: str, event_id: str) -> bool:
        return self.store.claim_event(platform, event_id)

    def link_message(self, exchange_id: str, platform: str, message_ref: str) -> None:
        self.store.link_message(exchange_id, platform, message_ref)

    def exchange_for_message(self, platform: str, message_ref: str) -> str | None:
        return self.store.exchange_for_message(platform, message_ref)

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

    # feedback ----------------------------------------------------------------------------------

    def vote(self, exchange_id: str, platform: str, user_id: str, value: int) -> VoteResult:
        """+1, -1, or 0 to retract. The reply becomes an example of its scope at the threshold.

        The asker's own 👍 counts only if they are listed in BOT_ADMINS (who could teach it anyway),
        so no user can make the bot repeat something to others on their own.
        """
        if self.store.exchange(exchange_id) is None:
            raise UserError(f"no exchange {exchange_id!r}")
        with self._example_lock:
            score = self.store.set_vote(exchange_id, platform, user_id, value)  # queues the example sync
            is_example = self._sync_vote_example(exchange_id)
        return VoteResult(exchange_id, score, is_example)

    def _sync_vote_example(self, exchange_id: str) -> bool:
        """Make the example store agree with the exchange's votes; True when it is an example.

        A vote only ever adds a new example or removes one its own exchange's votes added:
        taught, imported and accepted examples keep their label and provenance whatever users vote.
        """
        exchange = self.store.exchange(exchange_id)
        if exchange is None:
            self.store.example_synced("exchange", exchange_id)
            return False
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
                    if kind == "exchange":
                        self._sync_vote_example(ref)
                    else:
                        self._sync_correction_example(ref)
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
        if exchange_id is None:
            return None
        if not added:
            # Removing 👍 retracts only a 👍: a user who switched to 👎 keeps their 👎.
            if self.store.user_vote(exchange_id, platform, user_id) != value:
                exchange = self.store.exchange(exchange_id)
                promoted = exchange is not None and self._promoted(exchange)
                return VoteResult(exchange_id, self.store.score(exchange_id), promoted)
            value = 0
        return self.vote(exchange_id, platform, user_id, value)

    def _vote_value(self, platform: str, emoji: str) -> int:
        section = getattr(self.settings, platform, None)
        if section is None:
            return 0
        name = emoji.strip(":").split("::")[0]  # Slack: "+1::skin-tone-2" is still a +1
        if name in section.up_emoji:
            return 1
        if name in section.down_emoji:
            return -1
        return 0

    def correct(
        self, platform: str, user_id: str, exchange_id: str, text: str, roles: Sequence[str] = (), server: str = ""
    ) -> CommandResult:
        """A better answer for a reply: counts at once from an admin, waits for review otherwise."""
        answer = text.strip()
        prefix = self.settings.correction_prefix
        if answer.lower().startswith(prefix.lower()):
            answer = answer[len(prefix) :].strip()
        if not answer:
            raise UserError(f"the correction is empty; write `{prefix} <the better answer>`")
        exchange = self.store.exchange(exchange_id)
        if exchange is None:
            raise UserError(f"no exchange {exchange_id!r}")
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
        if is_admin:
            with self._example_lock:
                self._sync_correction_example(correction.id)
            return CommandResult(
                f"Thanks, learned: the answer to {exchange.user_text!r} is now yours.", ephemeral=False
            )
        return CommandResult(
            f"Thanks, your correction {correction.id} is waiting for an admin's review.", ephemeral=False
        )

    def teach(self, platform: str, user_id: str, question: str, answer: str) -> str:
        correction = self.store.add_correction(None, platform, user_id, question, answer, accepted_by=user_id)
        with self._example_lock:
            self._sync_correction_example(correction.id)
        return example_id(question, answer)

    # commands ----------------------------------------------------------------------------------

    def command(
        self,
        platform: str,
        user_id: str,
        text: str,
        conversation: ConversationKey,
        roles: Sequence[str] = (),
        server: str = "",
    ) -> CommandResult:
        """Run a command line ("lora use v0002"). `roles`: the caller's role ids in `server`, if any."""
        try:
            cmd = admin.parse_command(text)
            is_admin = self.is_admin(platform, user_id, roles, server)
            if cmd.admin_only and not is_admin:
                log.warning("refused admin command %r from %s:%s", cmd.name, platform, user_id)
                return CommandResult(f"Sorry, `{cmd.name}` is for admins only. Ask an admin, or try `help`.", ok=False)
            return self._dispatch(cmd, platform, user_id, conversation, is_admin)
        except UserError as exc:
            return CommandResult(str(exc), ok=False)

    def _dispatch(
        self, cmd: admin.Command, platform: str, user_id: str, conversation: ConversationKey, is_admin: bool
    ) -> CommandResult:
        if cmd.name == "help":
            return CommandResult(admin.help_text(is_admin))
        if cmd.name == "reset":
            self.reset(conversation)
            return CommandResult("Done: I forgot this conversation.")
        if cmd.name == "teach":
            question, answer = admin.parse_teach(cmd.args)
            example = self.teach(platform, user_id, question, answer)
            return CommandResult(f"Learned (example {example}): {question!r} => {answer!r}")
        if cmd.name == "feedback review":
            return CommandResult(self._review_text())
        if cmd.name in ("feedback accept", "feedback reject"):
            return self._review(
                admin.single_arg(cmd.args, "correction id"), cmd.name.endswith("accept"), platform, user_id
            )
        if cmd.name == "feedback export":
            from bot.dataset import chat_export_path, export_feedback, kto_path

            name = admin.single_arg(cmd.args, "file name")
            # The terminal and the CLI are the data directory's owner: any path. Chat: exports/ only.
            path = Path(name) if platform in LOCAL_PLATFORMS else chat_export_path(self.settings.data_dir, name)
            counts = export_feedback(self.settings, self.examples, self.store, path)
            return CommandResult(
                f"Wrote {counts['sft']} SFT rows to {path} and {counts['kto']} KTO rows to {kto_path(path)}"
            )
        if cmd.name == "status":
            return CommandResult(self.status_text())
        return self._lora_command(cmd, f"{platform}:{user_id}")

    def _review_text(self) -> str:
        pending = self.store.corrections("pending")
        if not pending:
            return "No corrections are waiting for review."
        lines = [f"{len(pending)} correction(s) waiting (accept with `feedback accept ID`):"]
        for c in pending:
            lines.append(f"  {c.id}  by {c.platform}:{c.user_id}\n    Q: {c.question}\n    A: {c.answer}")
        return "\n".join(lines)

    def _review(self, correction_id: str, accept: bool, platform: str, user_id: str) -> CommandResult:
        correction = self.store.review_correction(correction_id, accept, f"{platform}:{user_id}")
        if correction is None:
            raise UserError(f"no pending correction {correction_id!r}; see `feedback review`")
        if accept:
            with self._example_lock:
                self._sync_correction_example(correction.id)
            return CommandResult(f"Accepted {correction.id}: it is now an example.")
        return CommandResult(f"Rejected {correction.id}.")

    def _lora_command(self, cmd: admin.Command, who: str) -> CommandResult:
        if self.registry is None or self.trainer is None:
            raise UserError("LoRA training is not available in this process")
        if cmd.name == "retrain":
            started = self.trainer.start(triggered_by=who)
            return CommandResult(started.message, ephemeral=False, ok=started.ok, followup=started.followup)
        if cmd.name == "lora list":
            return CommandResult(self.registry.describe())
        if cmd.name == "lora use":
            version = admin.single_arg(cmd.args, "LoRA version")
            self.registry.use(version, by=who)
            return CommandResult(self._after_swap(f"Now serving LoRA {version}."))
        if cmd.name == "lora rollback":
            version = self.registry.rollback(by=who)
            return CommandResult(self._after_swap(f"Rolled back: now serving {version or 'the base model'}."))
        raise UserError(f"unknown command {cmd.name!r}")

    def _after_swap(self, text: str) -> str:
        self.generation.request_sync().result(timeout=120)
        swap = getattr(self.generation.backend, "last_swap_s", None)
        return f"{text} (swap took {swap:.2f} s)" if swap is not None else text

    def status_text(self) -> str:
        backend = self.generation.backend
        files = getattr(backend, "files", None)
        lines = [
            f"Model: {files.model_id if files else 'unknown'} ({self.settings.quantize}) on "
            f"{getattr(backend, 'device', '?')}",
            f"LoRA serving: {self.generation.backend.lora_version or 'none (base model)'}",
            f"Examples: {self.examples.count()}  Exchanges: {self.store.count_exchanges()}  "
            f"Pending corrections: {len(self.store.corrections('pending'))}",
            f"Queue: {self.generation.queued()} waiting",
        ]
        if self.trainer is not None:
            lines.append(self.trainer.status_text())
        return "\n".join(lines)
