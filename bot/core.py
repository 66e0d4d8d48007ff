"""The one orchestrator: what each platform event needs, answers, and the commands every adapter shares.

It returns values and never talks to a chat platform; adapters do the sending. It is
synchronous and thread-safe; generation itself is serialized by the GenerationService.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from bot import commands
from bot.config import Settings
from bot.feedback_rules import FeedbackRules
from bot.generation.decoding import favored_tokens
from bot.generation.engine import Generated, ReplyHints
from bot.generation.queueing import HeldStream, InFlightLimit
from bot.generation.worker import GenerationService
from bot.ops import metrics
from bot.prompt import build_prompt, conversation_start
from bot.query_adapter import AdapterFiles, QueryAdapter
from bot.retrieval import leans_on_history, related_turns, retrieval_query
from bot.stores.examples import ExampleStore
from bot.stores.feedback import FeedbackStore
from bot.types import (
    Answering,
    CommandResult,
    ConversationKey,
    Done,
    Example,
    Feedback,
    Ignored,
    Incoming,
    Looked,
    Message,
    Outcome,
    Queued,
    Reply,
    StreamEvent,
    Token,
    Turn,
    UserError,
    scope_of,
)

if TYPE_CHECKING:
    from bot.stores.lora_registry import LoraRegistry
    from bot.stores.records import Correction as PendingCorrection
    from bot.training.runner import TrainingRunner

log = logging.getLogger(__name__)


class Core:
    """Decides what each event needs (`handle`), answers, and runs commands; the feedback rules
    (votes, corrections, teaching, who is an admin) are `rules` (bot/feedback_rules.py)."""

    def __init__(
        self,
        settings: Settings,
        generation: GenerationService | None,
        examples: ExampleStore,
        store: FeedbackStore,
        registry: LoraRegistry | None = None,
        trainer: TrainingRunner | None = None,
    ) -> None:
        self.rules = FeedbackRules(settings, examples, store)
        self.settings = settings
        self.generation = generation  # None where no model is loaded (the CLI's commands)
        self.examples = examples
        self.store = store
        self.registry = registry
        self.trainer = trainer
        self._in_flight = InFlightLimit(
            settings.max_waiting_per_user,
            settings.answer_threads,
            max(1, int(settings.answer_threads * settings.workspace_share)),
        )
        self._adapters = AdapterFiles()  # the query adapters of the LoRA versions served so far

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings apply to the feedback rules too (an admin list changed at run time, a test)."""
        self._settings = settings
        self.rules.settings = settings

    # the entry point -----------------------------------------------------------------------------

    def handle(self, event: Incoming | Feedback) -> Outcome:
        """Decide what an adapter's event needs: Ignored, Answering (a stream to show), a
        CommandResult (a command, a correction), or a VoteResult. Quick: nothing here waits for
        the model (an answer is generated while its `events` are iterated)."""
        event = self.rules.admit(event)  # a `correct:` reply is feedback too
        if isinstance(event, Ignored):
            return event
        if not isinstance(event, Incoming):
            return self.rules.handle(event)
        if event.command is None:
            return self._message(event)
        if not self.store.claim_event(event.platform, event.event_id):
            return Ignored("a retry of a command already run")
        is_admin = self.rules.is_admin(event.platform, event.user_id, event.roles, event.workspace)
        return commands.run_event(self, event, is_admin)

    def _message(self, event: Incoming) -> Outcome:
        addressed = (
            event.is_dm
            or event.mentions_bot
            or event.replies_to_bot
            or (event.in_thread and self.store.has_history(event.conversation))
        )
        if not addressed:
            return Ignored("not addressed to the bot")
        # Platforms deliver some messages twice (Slack: app_mention and message; retries; replays).
        # An empty one (a bare mention) is answered too: the stream says what is wrong.
        if not self.store.claim_event(event.platform, event.event_id):
            return Ignored("a retry of a message already answered")
        message = Message(event.conversation, event.user_id, event.text.strip(), event.user_name, scope_of(event),
                          event.workspace)  # fmt: skip
        stop = threading.Event()  # the platform's Stop button sets it
        try:  # a flood is refused here, at once: nothing is queued in an adapter's pool or the model's
            return Answering(message, self.answer_stream(message, stop), stop)
        except UserError as exc:
            return CommandResult(str(exc), ok=False)

    # answering ---------------------------------------------------------------------------------

    def answer_stream(self, message: Message, stop: threading.Event | None = None) -> Iterator[StreamEvent]:
        """Looked(examples), Queued(position)*, Token(delta)*, then Done(reply) once the exchange is
        stored; setting `stop` ends the reply early (Done with a `stopped` reply).

        Raises UserError at once, before anything is retrieved, queued or stored, when the user
        already has `max_waiting_per_user` questions in flight or the bot `answer_threads`.
        """
        owner = f"{message.platform}:{message.user_id}"
        group = f"{message.platform}:{message.workspace}"
        admitted = self._in_flight.acquire(owner, group)
        if admitted != "admitted":
            metrics.REFUSED.labels(admitted).inc()
        if admitted == "owner busy":
            waiting = self._in_flight.per_owner
            raise UserError(
                f"You already have {waiting} question{'s' if waiting > 1 else ''} waiting; I'll get to them"
                " — please wait for an answer before asking more."
            )
        if admitted == "all busy":
            raise UserError(f"I'm answering {self._in_flight.total} questions right now; please ask again in a minute.")
        if admitted == "group busy":
            raise UserError(
                f"I'm answering {self._in_flight.per_group} questions from this workspace right now, its share; "
                "please ask again in a minute."
            )
        # Released when the answer ends, fails, or is dropped by its adapter (once the model has let it go).
        release = functools.partial(self._in_flight.release, owner, group)
        return HeldStream(self._answer_stream(message, owner, group, stop), release)

    def _reply_hints(
        self, generation: GenerationService, retrieved: Sequence[Example], in_prompt: tuple[str, ...]
    ) -> ReplyHints:
        """How this reply is written: which tokens the answer bias favours, and with which model."""
        favored: tuple[int, ...] = ()
        if self.settings.tuning.answer_bias and retrieved and in_prompt[:1] == (retrieved[0].id,):
            favored = tuple(favored_tokens(generation.tokenizer, retrieved[0].output))
        # A LoRA is trained to answer from the verified answers in its prompt (bot/training/dataset.py); without
        # one, the base model answers, so a LoRA can't cost the general answers it was never meant for.
        base_only = self.settings.tuning.lora_for == "examples" and not in_prompt
        return ReplyHints(favored, base_only)

    def _answer_stream(
        self, message: Message, owner: str, group: str, stop: threading.Event | None
    ) -> Iterator[StreamEvent]:
        if self.generation is None:
            raise UserError("no model is loaded in this process; ask the running bot")
        generation = self.generation
        text = message.text.strip()
        if not text:
            raise UserError("the message is empty")
        if len(text) > self.settings.max_message_chars:
            raise UserError(f"the message has {len(text)} characters; the limit is {self.settings.max_message_chars}")
        started = time.monotonic()
        settings = self.settings
        history = recent = self.store.history(message.conversation, settings.tuning.history_turns)
        query = retrieval_query(text, history[-1].user if history else None)
        if not leans_on_history(text):  # a new question: unrelated turns only distract the small model
            history = related_turns(self.examples.embedder, text, history)
        retriever_version, adapter = self._query_adapter(generation)
        examples = self.examples.retrieve(
            query, settings.tuning.retrieval_k, settings.tuning.min_similarity, scope=message.scope, adapter=adapter
        )
        try:
            prompt = build_prompt(
                generation.tokenizer,
                settings.system_prompt,
                examples,
                history,
                text,
                budget_tokens=settings.context_tokens - settings.max_new_tokens,
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None
        hints = self._reply_hints(generation, examples, prompt.example_ids)
        serving = generation.serving_lora
        by_id = {e.id: e for e in examples}
        in_prompt = tuple(by_id[i] for i in prompt.example_ids)
        yield Looked(in_prompt, None if hints.base_only or serving is None else serving[0])
        first_token: float | None = None  # as the user sees it: from the message's arrival
        # Closed with this stream: a reply nobody waits for any more is cancelled, not written (worker.py).
        with contextlib.closing(
            generation.stream(owner, prompt.input_ids, settings.max_new_tokens, hints, group, stop)
        ) as events:
            for event in events:
                if isinstance(event, (Queued, Token)):
                    if isinstance(event, Token) and first_token is None:
                        first_token = time.monotonic() - started
                    yield event
                elif isinstance(event, Generated):
                    latency = time.monotonic() - started
                    metrics.observe_reply(latency, first_token, event.started_after_s, event.stats.completion_tokens)
                    stats = dataclasses.replace(event.stats, latency_s=latency)  # the worker's counts from its start
                    exchange_id = self.store.add_exchange(
                        conversation=message.conversation,
                        user_id=message.user_id,
                        user_text=text,
                        reply=event.text,
                        prompt=prompt.messages,
                        example_ids=prompt.example_ids,
                        lora_version=event.lora_version,
                        stats=stats,
                        scope=message.scope,
                        retriever_version=retriever_version,
                        stopped=event.stopped,
                    )
                    # The conversation's turns as its next message will read them (no second query).
                    turns = settings.tuning.history_turns
                    upcoming = [*recent, Turn(text, event.text)][-turns:] if turns else []
                    self._read_next_start_ahead(generation, upcoming, hints)
                    reply = Reply(event.text, exchange_id, event.lora_version, prompt.example_ids, stats, event.stopped)
                    yield Done(reply)

    def _query_adapter(self, generation: GenerationService) -> tuple[str | None, QueryAdapter | None]:
        """The serving LoRA version's query adapter, if it has one, and that version: retrieval
        follows the LoRA (promoted, swapped and rolled back together)."""
        serving = generation.serving_lora
        adapter = self._adapters.get(serving[1]) if serving else None
        return (serving[0] if serving and adapter else None), adapter

    def _read_next_start_ahead(self, generation: GenerationService, history: list[Turn], hints: ReplyHints) -> None:
        """While the user reads the reply, the engine reads what the conversation's next prompt will
        start with (the system prompt and the turns so far, this one included), so that the next
        reply reads only its examples and message: bench/cpu_speed.py --prompt conversation."""
        settings = self.settings
        try:
            start = conversation_start(generation.tokenizer, settings.system_prompt, history)
            if start:
                generation.read_ahead(start, hints)
        except Exception:  # time saved on the next reply, no more: the answer stored is shown as it is
            log.exception("reading the conversation's next start ahead failed")

    def answer(self, message: Message) -> Reply:
        for event in self.answer_stream(message):
            if isinstance(event, Done):
                return event.reply
        raise RuntimeError("generation ended without a reply")

    # conversation state ------------------------------------------------------------------------

    def reset(self, conversation: ConversationKey) -> None:
        self.store.reset(conversation)

    def link_message(self, exchange_id: str, platform: str, message_ref: str) -> None:
        self.store.link_message(exchange_id, platform, message_ref)

    def exchange_for_message(self, platform: str, message_ref: str) -> str | None:
        return self.store.exchange_for_message(platform, message_ref)

    def has_history(self, conversation: ConversationKey) -> bool:
        return self.store.has_history(conversation)

    def is_admin(self, platform: str, user_id: str, roles: Sequence[str] = (), server: str = "") -> bool:
        """For what adapters show only to admins (autocomplete); every command checks again here."""
        return self.rules.is_admin(platform, user_id, roles, server)

    def pending_corrections(self) -> list[PendingCorrection]:
        return self.store.corrections("pending")

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
        """Run a command line ("lora use v0002"): `handle` for a caller who already has one."""
        event = Incoming(platform, conversation, user_id, command=text, roles=tuple(roles), workspace=server)
        result = self.handle(event)
        assert isinstance(result, CommandResult)  # without an event id nothing is a duplicate
        return result

    def after_swap(self, text: str) -> str:
        """`text`, once the generation worker serves the registry's LoRA (none here: the CLI)."""
        if self.generation is None:
            return f"{text} A running bot picks it up within a second."
        generation = self.generation
        generation.request_sync().result(timeout=120)
        swap = generation.engine.loras.last_swap_s
        return f"{text} (swap took {swap:.2f} s)" if swap is not None else text
