"""The training process's own wiring: the parts it answers with, built here so that nothing in
bot/finetune/ imports the bot's wiring (bot/wiring.py) or anything that starts training."""

from __future__ import annotations

from bot.config import Settings
from bot.core import Core
from bot.generation.engine import Engine
from bot.generation.worker import GenerationService
from bot.stores.examples import ExampleStore
from bot.stores.feedback import FeedbackStore


def answering_core(settings: Settings, engine: Engine, examples: ExampleStore, store: FeedbackStore) -> Core:
    """A core that answers as the bot does (retrieval, prompt, the worker) but has no registry and
    starts no training: the gate asks the candidate and the serving LoRA through it."""
    return Core(settings, GenerationService(engine), examples, store)
