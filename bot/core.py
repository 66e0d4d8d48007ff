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
from bot.config import Settings
from bot.feedback import FeedbackStore
from bot.generation import Generated, GenerationService
from bot.prompt import build_prompt
from bot.retrieval import ExampleStore
from bot.types import (
    CommandResult,
    ConversationKey,
    Done,
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

    # answering ---------------------------------------------------------------------------------

    def answer_stream(self, message: Message) -> Iterator[StreamEvent]:
        """Queued(position)*, Token(delta)*, then Done(reply) once the exchange is stored."""
        text = message.text.strip()
        if not text:
            raise UserError("the message is empty")
        if len(text) > self.settings.max_message_chars:
            raise UserError(f"the message has {len(text)} characters; the limit is {self.settings.max_message_chars}")
        started = time.monotonic()
        settings = self.settings
        examples = self.examples.retrieve(
            text, settings.retrieval_k, settings.min_similarity, settings.dedup_similarity
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
        owner = f"{message.platform}:{message.user_id}"
        for event in self.generation.stream(owner, prompt.input_ids, settings.max_new_tokens):
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

    def is_admin(self, platform: str, user_id: str, roles: Sequence[str] = ()) -> bool:
        """A configured admin id, or (where the platform has roles) a holder of the admin role."""
        if f"{platform}:{user_id}" in self.settings.admins:
            return True
        admin_role = getattr(getattr(self.settings, platform, None), "admin_role", "")
        return bool(admin_role) and admin_role in roles

    # feedback ----------------------------------------------------------------------------------

    def vote(self, exchange_id: str, platform: str, user_id: str, value: int) -> VoteResult:
        """+1, -1, or 0 to retract. The exchange becomes a good example at the threshold."""
        exchange = self.store.exchange(exchange_id)
        if exchange is None:
            raise UserError(f"no exchange {exchange_id!r}")
        with self._example_lock:
            score = self.store.set_vote(exchange_id, platform, user_id, value)
            is_example = score >= self.settings.vote_threshold
            if is_example:
                self.examples.add(exchange.user_text, exchange.reply, "good", "vote", exchange_id)
            else:
                self._withdraw_voted_example(exchange.user_text, exchange.reply, exchange_id)
        return VoteResult(exchange_id, score, is_example)

    def _withdraw_voted_example(self, question: str, answer: str, exchange_id: str) -> None:
        from bot.retrieval import example_id

        found = self.examples.get([example_id(question, answer)])
        # Only an example that this exchange's votes put there; never an imported or taught one.
        if found and found[0].source == "vote" and found[0].exchange_id == exchange_id:
            self.examples.remove([found[0].id])

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
                return VoteResult(exchange_id, self.store.score(exchange_id), self._is_example(exchange_id))
            value = 0
        return self.vote(exchange_id, platform, user_id, value)

    def _is_example(self, exchange_id: str) -> bool:
        return self.store.score(exchange_id) >= self.settings.vote_threshold

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

    def correct(self, platform: str, user_id: str, exchange_id: str, text: str) -> CommandResult:
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
        is_admin = self.is_admin(platform, user_id)
        correction = self.store.add_correction(
            exchange_id, platform, user_id, exchange.user_text, answer, accepted_by=user_id if is_admin else None
        )
        if is_admin:
            self.examples.add(exchange.user_text, answer, "good", "correction", exchange_id)
            return CommandResult(
                f"Thanks, learned: the answer to {exchange.user_text!r} is now yours.", ephemeral=False
            )
        return CommandResult(
            f"Thanks, your correction {correction.id} is waiting for an admin's review.", ephemeral=False
        )

    def teach(self, platform: str, user_id: str, question: str, answer: str) -> str:
        correction = self.store.add_correction(None, platform, user_id, question, answer, accepted_by=user_id)
        return self.examples.add(question, answer, "good", "taught", correction.id)

    # commands ----------------------------------------------------------------------------------

    def command(
        self, platform: str, user_id: str, text: str, conversation: ConversationKey, roles: Sequence[str] = ()
    ) -> CommandResult:
        """Run a command line ("lora use v0002"). `roles`: the caller's role ids and names, if any."""
        try:
            cmd = admin.parse_command(text)
            if cmd.admin_only and not self.is_admin(platform, user_id, roles):
                log.warning("refused admin command %r from %s:%s", cmd.name, platform, user_id)
                return CommandResult(f"Sorry, `{cmd.name}` is for admins only. Ask an admin, or try `help`.", ok=False)
            return self._dispatch(cmd, platform, user_id, conversation)
        except UserError as exc:
            return CommandResult(str(exc), ok=False)

    def _dispatch(
        self, cmd: admin.Command, platform: str, user_id: str, conversation: ConversationKey
    ) -> CommandResult:
        if cmd.name == "help":
            return CommandResult(admin.help_text(self.is_admin(platform, user_id)))
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
            from bot.dataset import export_feedback, kto_path

            path = Path(admin.single_arg(cmd.args, "file path"))
            counts = export_feedback(self, path)
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
            self.examples.add(correction.question, correction.answer, "good", "correction", correction.exchange_id)
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
