"""Wiring: builds the real core from settings. The only place that knows every concrete class."""

from __future__ import annotations

import logging

from bot.config import Settings
from bot.core import Core
from bot.feedback import FeedbackStore
from bot.generation import GenerationService, HFBackend
from bot.lora_registry import LoraRegistry
from bot.model_files import prepare_model
from bot.retrieval import ExampleStore, SentenceEmbedder
from bot.training_runner import TrainingRunner

log = logging.getLogger(__name__)
LOCAL_ADMIN = "console:local"  # whoever sits at the terminal owns the data directory


def build_examples(settings: Settings) -> ExampleStore:
    return ExampleStore(SentenceEmbedder(settings.embedder), settings.data_dir / "chroma")


def build_feedback(settings: Settings) -> FeedbackStore:
    return FeedbackStore(settings.data_dir / "feedback.sqlite3")


def build_core(settings: Settings) -> Core:
    if LOCAL_ADMIN not in settings.admins:
        settings = settings.model_copy(update={"admins": [*settings.admins, LOCAL_ADMIN]})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    files = prepare_model(settings)
    registry = LoraRegistry.open(settings, files.fingerprint)
    backend = HFBackend(settings, files, lora_source=registry.active_lora)
    generation = GenerationService(backend)
    try:
        generation.request_sync().result()  # serve the active LoRA from the first reply on
    except Exception as exc:  # a bad LoRA must not stop the bot: the base model serves
        log.error("cannot serve the active LoRA, serving the base model: %s", exc)
    trainer = TrainingRunner(settings, registry, on_finished=generation.request_sync)
    return Core(settings, generation, build_examples(settings), build_feedback(settings), registry, trainer)
