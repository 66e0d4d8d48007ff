"""`bot doctor`: what is installed, which model and device, where the data lives."""

from __future__ import annotations

import sys

from rich.table import Table

from bot.config import Settings


def doctor_table(s: Settings) -> Table:
    from importlib.metadata import PackageNotFoundError, version

    from bot.generation.model_files import default_gguf_path, model_cache_dir

    table = Table("what", "value")
    for package in ("torch", "transformers", "bitsandbytes", "llama-cpp-python", "peft", "trl", "chromadb",
                    "sentence-transformers", "slack-bolt", "discord.py"):  # fmt: skip
        try:
            table.add_row(package, version(package))
        except PackageNotFoundError:
            table.add_row(package, "[red]not installed[/red]")
    import torch

    table.add_row("python", sys.version.split()[0])
    table.add_row("device", "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    from bot.generation.engines import choose_engine, llama_cpp_problem

    table.add_row("model", s.model)
    engine = choose_engine(s)
    detail = f"setting: {s.engine}"
    if engine == "llama.cpp":
        from bot.generation.llama_cpu import ggml_cpu_backend, load_llama_cpp

        detail += f"; CPU kernels: {ggml_cpu_backend(load_llama_cpp())}"
    elif s.engine == "auto" and (problem := llama_cpp_problem()) is not None:
        detail += f"; not llama.cpp: {problem}"
    table.add_row("engine", f"{engine} ({detail})")
    try:
        table.add_row("default model file", str(default_gguf_path()))
    except Exception as exc:
        table.add_row("default model file", f"[red]{exc}[/red]")
    table.add_row("model cache", str(model_cache_dir(s).resolve()))
    table.add_row("data dir", str(s.data_dir.resolve()))
    table.add_row("slack", "configured" if s.slack.enabled else "not configured")
    table.add_row("discord", "configured" if s.discord.enabled else "not configured")
    return table
