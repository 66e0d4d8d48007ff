"""Wiring: a core from its parts (`assemble_core`, shared by every caller), and the real bot's from
settings (`build_core`). The only place that knows every concrete class."""

from __future__ import annotations

import functools
import importlib.util
import logging

from bot.config import DEFAULT_MODEL, Settings
from bot.control import DataDirOwner, snapshot
from bot.core import Core
from bot.feedback import FeedbackStore
from bot.generation import Backend, GenerationService
from bot.hf_backend import HFBackend, pick_device
from bot.lora_follow import LoraSource
from bot.lora_registry import LoraRegistry
from bot.model_files import ModelFiles, prepare_model
from bot.retrieval import Embedder, ExampleStore, SentenceEmbedder
from bot.training.runner import TrainingRunner
from bot.types import UserError

log = logging.getLogger(__name__)
LOCAL_ADMIN = "console:local"  # whoever sits at the terminal owns the data directory


def build_examples(settings: Settings, embedder: Embedder | None = None) -> ExampleStore:
    """The example store: on the chromadb server at `chroma_url`, else embedded in the data directory."""
    embedder = embedder or SentenceEmbedder(settings.embedder)
    if settings.chroma_url:
        return ExampleStore.remote(embedder, settings.chroma_url)
    return ExampleStore(embedder, settings.data_dir / "chroma")


def snapshot_examples(settings: Settings) -> ExampleStore:
    """The examples as they are now, copied into memory: the training process's (bot.control)."""
    embedder = SentenceEmbedder(settings.embedder)
    return snapshot(settings.data_dir, embedder, lambda: build_examples(settings, embedder))


def build_feedback(settings: Settings) -> FeedbackStore:
    """PostgreSQL when `database_url` is set (replicas share it), else the data directory's SQLite file."""
    return FeedbackStore(settings.database_url or settings.data_dir / "feedback.sqlite3")


def assemble_core(
    settings: Settings,
    backend: Backend | None,
    examples: ExampleStore,
    store: FeedbackStore | None = None,
    registry: LoraRegistry | None = None,
) -> Core:
    """A core from its parts: every place that builds one (the bot, the CLI, the training gate, the
    tests, the benchmarks) wires it here. `backend` None: no model here (the CLI's commands).
    `store` defaults to the data directory's feedback store; with a `registry`, the core can also
    train, and a finished run makes the worker pick up its LoRA."""
    generation = GenerationService(backend) if backend is not None else None
    store = build_feedback(settings) if store is None else store
    on_finished = generation.request_sync if generation is not None else None
    trainer = TrainingRunner(settings, registry, on_finished=on_finished) if registry else None
    return Core(settings, generation, examples, store, registry, trainer)


def choose_backend(settings: Settings) -> str:
    """Which engine writes replies: vLLM when a server is set; else the setting, where `auto` means
    llama.cpp on a CPU when it is installed and the model is the default (its GGUF is at hand),
    else transformers (bitsandbytes 4-bit: the CUDA path always). docs/cpu_speed.md has the figures."""
    if settings.vllm_url:
        return "vllm"
    if settings.backend != "auto":
        return settings.backend
    wanted = settings.model == DEFAULT_MODEL and pick_device(settings) == "cpu"
    return "llama.cpp" if wanted and llama_cpp_problem() is None else "transformers"


@functools.cache
def llama_cpp_problem() -> str | None:
    """Why llama.cpp cannot serve here (not installed, no CPU backend loads), or None when it can.
    Asked once a process: `auto` then falls back to transformers and `bot doctor` says why."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (make install EXTRAS=llama)"
    try:
        from bot.llama_backend import _llama_cpp, cpu_backend

        cpu_backend(_llama_cpp())
    except Exception as exc:  # a half-installed or broken build: any error means "not here"
        return f"{type(exc).__name__}: {exc}"
    return None


def build_backend(settings: Settings, files: ModelFiles, lora_source: LoraSource) -> Backend:
    choice = choose_backend(settings)
    if choice == "vllm":  # the GPU path: the model runs on a vLLM server, everything else here
        from bot.vllm_backend import VLLMBackend

        return VLLMBackend(settings, files, lora_source=lora_source)
    if choice == "llama.cpp":
        if settings.model != DEFAULT_MODEL:
            raise UserError(f"the llama.cpp backend runs the default model's GGUF only; for {settings.model} "
                            "set BOT_BACKEND=transformers")  # fmt: skip
        if importlib.util.find_spec("llama_cpp") is None:
            raise UserError("the llama.cpp backend is not installed: make install EXTRAS=llama (a one-time build)")
        from bot.llama_backend import LlamaCppBackend

        try:
            return LlamaCppBackend.for_default_model(settings, files, lora_source=lora_source)
        except Exception as exc:
            if settings.backend != "auto":
                raise
            # Chosen by `auto` only: a half-finished background build or a broken one must not
            # keep the bot from answering.
            log.warning("llama.cpp does not start (%s): replies come from transformers instead", exc)
            return HFBackend(settings, files, lora_source=lora_source)
    if pick_device(settings) == "cpu" and settings.model == DEFAULT_MODEL:
        log.info("replies on this CPU are several times faster with llama.cpp: make install EXTRAS=llama")
    return HFBackend(settings, files, lora_source=lora_source)


def build_core(settings: Settings, own_data_dir: bool = False, with_model: bool = True) -> Core:
    """The core on the real model. `own_data_dir`: this is the bot (`bot run`, `bot chat`), the one
    process that writes the example store; others reach it through its control socket.
    `with_model=False`: the stores, the registry and the trainer only, for commands that need no
    model (`bot lora ...`, `bot feedback export`); the embedder loads only if something embeds."""
    if LOCAL_ADMIN not in settings.admins:
        settings = settings.model_copy(update={"admins": [*settings.admins, LOCAL_ADMIN]})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    files = prepare_model(settings)
    registry = LoraRegistry.open(settings, files.fingerprint)
    if not with_model:
        return assemble_core(settings, None, build_examples(settings, SentenceEmbedder(settings.embedder, lazy=True)),
                             registry=registry)  # fmt: skip
    backend = build_backend(settings, files, registry.active_lora)
    owner = DataDirOwner.acquire(settings.data_dir) if own_data_dir else None  # before the store opens
    examples = build_examples(settings)
    core = assemble_core(settings, backend, examples, registry=registry)
    if owner is not None:
        # Only the store's one writer repairs it: examples owed by feedback a crash interrupted.
        core.repair_examples()
        owner.serve(examples)
    try:
        assert core.generation is not None
        core.generation.request_sync().result()  # serve the active LoRA from the first reply on
    except Exception as exc:  # a bad LoRA must not stop the bot: the base model serves
        log.error("cannot serve the active LoRA, serving the base model: %s", exc)
    return core
