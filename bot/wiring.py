"""Wiring: a core from its parts (`assemble_core`, shared by the bot, the CLI, the tests and the
benchmarks), and the real bot's from settings (`build_core`). The engines are built by
bot/generation/engines.py, the stores opened by bot/stores/opening.py; the training process has its
own wiring (bot/finetune/parts.py)."""

from __future__ import annotations

import logging
import threading

from bot.config import Settings
from bot.core import Core
from bot.embedder import SentenceEmbedder
from bot.generation.engine import Engine
from bot.generation.engines import build_engine
from bot.generation.model_files import prepare_model
from bot.generation.worker import GenerationService
from bot.stores.example_server import DataDirOwner
from bot.stores.examples import ExampleStore
from bot.stores.feedback import FeedbackStore
from bot.stores.lora_registry import LoraRegistry
from bot.stores.opening import build_examples, build_feedback
from bot.stores.private_dir import make_private
from bot.training.runner import TrainingRunner

log = logging.getLogger(__name__)
LOCAL_ADMIN = "console:local"  # whoever sits at the terminal owns the data directory
PRUNE_INTERVAL_S = 86400.0  # old prompts are cleared at start, then daily


def assemble_core(
    settings: Settings,
    engine: Engine | None,
    examples: ExampleStore,
    store: FeedbackStore | None = None,
    registry: LoraRegistry | None = None,
) -> Core:
    """A core from its parts: every place that builds one (the bot, the CLI, the training gate, the
    tests, the benchmarks) wires it here. `engine` None: no model here (the CLI's commands).
    `store` defaults to the data directory's feedback store; with a `registry`, the core can also
    train, and a finished run makes the worker pick up its LoRA."""
    generation = GenerationService(engine) if engine is not None else None
    store = build_feedback(settings) if store is None else store
    on_finished = generation.request_sync if generation is not None else None
    trainer = TrainingRunner(settings, registry, on_finished=on_finished) if registry else None
    return Core(settings, generation, examples, store, registry, trainer)


def build_core(settings: Settings, own_data_dir: bool = False, with_model: bool = True) -> Core:
    """The core on the real model. `own_data_dir`: this is the bot (`bot run`, `bot chat`), the one
    process that writes the example store; others reach it through its control socket.
    `with_model=False`: the stores, the registry and the trainer only, for commands that need no
    model (`bot lora ...`, `bot feedback export`); the embedder loads only if something embeds."""
    if LOCAL_ADMIN not in settings.admins:
        settings = settings.model_copy(update={"admins": [*settings.admins, LOCAL_ADMIN]})
    make_private(settings.data_dir, skip=[settings.cache_dir])
    files = prepare_model(settings)
    registry = LoraRegistry.open(settings, files.fingerprint)
    if not with_model:
        return assemble_core(settings, None, build_examples(settings, SentenceEmbedder(settings.embedder, lazy=True)),
                             registry=registry)  # fmt: skip
    engine = build_engine(settings, files, registry.active_lora)
    owner = DataDirOwner.acquire(settings.data_dir) if own_data_dir else None  # before the store opens
    examples = build_examples(settings)
    core = assemble_core(settings, engine, examples, registry=registry)
    if owner is not None:
        # Only the store's one writer repairs it: examples owed by feedback a crash interrupted.
        core.rules.repair_examples()
        owner.serve(examples)
        keep_pruning(core)
    try:
        assert core.generation is not None
        core.generation.request_sync().result()  # serve the active LoRA from the first reply on
    except Exception as exc:  # a bad LoRA must not stop the bot: the base model serves
        log.error("cannot serve the active LoRA, serving the base model: %s", exc)
    return core


def keep_pruning(core: Core, interval_s: float = PRUNE_INTERVAL_S) -> threading.Event:
    """Clear the prompts of exchanges older than retention.prompt_days now, then every `interval_s`,
    in a daemon thread (the store is thread-safe; replicas on one database may all do it: clearing
    is idempotent). Returns the event that stops it."""
    stop = threading.Event()

    def prune() -> None:
        while not stop.is_set():
            if days := core.settings.retention.prompt_days:  # read each time: settings can change
                try:
                    if cleared := core.store.clear_old_prompts(days):
                        log.info("cleared the prompts of %d exchange(s) older than %d days", cleared, days)
                except Exception:  # housekeeping: try again at the next interval
                    log.exception("could not clear old prompts")
            stop.wait(interval_s)

    threading.Thread(target=prune, daemon=True, name="retention").start()
    return stop
