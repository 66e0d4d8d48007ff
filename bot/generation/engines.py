"""Which engine writes the replies, and building it: vLLM when a server is set, else llama.cpp on a
CPU where it runs, else transformers (the `engine` setting; `BOT_BACKEND` is its old name)."""

from __future__ import annotations

import functools
import importlib.util
import logging

from bot.config import DEFAULT_MODEL, Settings
from bot.generation.engine import Engine
from bot.generation.hf_engine import HFEngine, pick_device
from bot.generation.llama_cpu import leave_cores_to_llama
from bot.generation.lora_follow import LoraSource
from bot.generation.model_files import ModelFiles
from bot.types import UserError

log = logging.getLogger(__name__)


def choose_engine(settings: Settings) -> str:
    """Which engine writes replies: vLLM when a server is set; else the setting, where `auto` means
    llama.cpp on a CPU when it is installed and the model is the default (its GGUF is at hand),
    else transformers (bitsandbytes 4-bit: the CUDA path always). docs/cpu_speed.md has the figures."""
    if settings.vllm_url:
        return "vllm"
    if settings.engine != "auto":
        return settings.engine
    wanted = settings.model == DEFAULT_MODEL and pick_device(settings) == "cpu"
    return "llama.cpp" if wanted and llama_cpp_problem() is None else "transformers"


@functools.cache
def llama_cpp_problem() -> str | None:
    """Why llama.cpp cannot serve here (not installed, no CPU engine loads), or None when it can.
    Asked once a process: `auto` then falls back to transformers and `bot doctor` says why."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (make install EXTRAS=llama)"
    try:
        from bot.generation.llama_cpu import ggml_cpu_backend, load_llama_cpp

        ggml_cpu_backend(load_llama_cpp())
    except Exception as exc:  # a half-installed or broken build: any error means "not here"
        return f"{type(exc).__name__}: {exc}"
    return None


def build_engine(settings: Settings, files: ModelFiles, lora_source: LoraSource) -> Engine:
    choice = choose_engine(settings)
    if choice == "vllm":  # the GPU path: the model runs on a vLLM server, everything else here
        from bot.generation.vllm_engine import VLLMEngine

        return VLLMEngine(settings, files, lora_source=lora_source)
    if choice == "llama.cpp":
        if settings.model != DEFAULT_MODEL:
            raise UserError(f"the llama.cpp engine runs the default model's GGUF only; for {settings.model} "
                            "set BOT_ENGINE=transformers")  # fmt: skip
        if importlib.util.find_spec("llama_cpp") is None:
            raise UserError("the llama.cpp engine is not installed: make install EXTRAS=llama (a one-time build)")
        from bot.generation.llama_engine import LlamaCppEngine

        try:
            engine = LlamaCppEngine.for_default_model(settings, files, lora_source=lora_source)
        except Exception as exc:
            if settings.engine != "auto":
                raise
            # Chosen by `auto` only: a half-finished background build or a broken one must not
            # keep the bot from answering.
            log.warning("llama.cpp does not start (%s): replies come from transformers instead", exc)
            return HFEngine(settings, files, lora_source=lora_source)
        leave_cores_to_llama()  # every process that serves on it: run, chat, ask, eval, the gate, the image
        return engine
    if pick_device(settings) == "cpu" and settings.model == DEFAULT_MODEL:
        log.info("replies on this CPU are several times faster with llama.cpp: make install EXTRAS=llama")
    return HFEngine(settings, files, lora_source=lora_source)
