"""Which engine writes the replies (`BOT_ENGINE`, once `BOT_BACKEND`), and what happens when it is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bot.generation import engines as app
from bot.types import UserError
from tests.conftest import test_settings as settings_for
from tests.conftest import tuned


def test_auto_picks_llama_cpp_on_a_cpu_where_it_serves_and_transformers_otherwise(monkeypatch, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, tuning__device="cpu")
    monkeypatch.setattr(app, "llama_cpp_problem", lambda: None)
    assert app.choose_engine(settings) == "llama.cpp"
    assert app.choose_engine(tuned(settings, device="cuda")) == "transformers"
    assert app.choose_engine(settings.model_copy(update={"model": str(tmp_path)})) == "transformers"
    assert app.choose_engine(settings.model_copy(update={"engine": "transformers"})) == "transformers"
    assert app.choose_engine(settings.model_copy(update={"vllm_url": "http://gpu:8000"})) == "vllm"
    monkeypatch.setattr(app, "llama_cpp_problem", lambda: "llama-cpp-python is not installed")
    assert app.choose_engine(settings) == "transformers"


def test_llama_cpp_that_is_missing_or_loads_no_cpu_backend_is_not_chosen(monkeypatch) -> None:
    """The image's build kept its CPU libraries where ggml did not look: `auto` then said llama.cpp
    (installed) while the bot fell back to transformers. Now the choice asks whether a CPU backend loads."""
    installed = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llama_cpp" else installed(name))
    app.llama_cpp_problem.cache_clear()
    assert "not installed" in app.llama_cpp_problem()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "llama_cpp" else installed(name))
    from bot.generation import llama_cpu

    def no_cpu_backend(_llama_cpp: object) -> str:
        raise RuntimeError("llama.cpp loads no CPU backend")

    monkeypatch.setattr(llama_cpu, "load_llama_cpp", lambda: object())
    monkeypatch.setattr(llama_cpu, "ggml_cpu_backend", no_cpu_backend)
    app.llama_cpp_problem.cache_clear()
    assert app.llama_cpp_problem() == "RuntimeError: llama.cpp loads no CPU backend"
    app.llama_cpp_problem.cache_clear()


def test_llama_cpp_asked_for_but_not_there_says_how_to_get_it(monkeypatch, tmp_path: Path) -> None:
    installed = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llama_cpp" else installed(name))
    with pytest.raises(UserError, match="make install EXTRAS=llama"):
        app.build_engine(settings_for(tmp_path, engine="llama.cpp"), None, None)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="default model's GGUF only"):
        app.build_engine(settings_for(tmp_path, engine="llama.cpp", model=str(tmp_path)), None, None)  # type: ignore[arg-type]


def test_auto_falls_back_to_transformers_when_llama_cpp_does_not_start(monkeypatch, tmp_path: Path) -> None:
    """A background build still copying its files, or a broken one, must not stop the bot."""
    from bot.generation import hf_engine, llama_engine

    monkeypatch.setattr(app, "choose_engine", lambda settings: "llama.cpp")

    def broken(*args, **kwargs):
        raise OSError("libllama.so: cannot open shared object file")

    monkeypatch.setattr(llama_engine.LlamaCppEngine, "for_default_model", classmethod(lambda cls, *a, **k: broken()))
    monkeypatch.setattr(hf_engine.HFEngine, "__init__", lambda self, *a, **k: None)
    installed = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "llama_cpp" else installed(name))
    assert isinstance(app.build_engine(settings_for(tmp_path), None, None), hf_engine.HFEngine)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="libllama"):
        app.build_engine(settings_for(tmp_path, engine="llama.cpp"), None, None)  # type: ignore[arg-type]


def test_a_process_that_serves_on_llama_cpp_gives_torch_one_thread(monkeypatch, tmp_path: Path) -> None:
    """torch's idle OpenMP threads spin on the cores llama.cpp decodes on (issue 35): once llama.cpp
    serves, torch keeps one thread; a transformers engine keeps torch's own."""
    import torch

    from bot.generation import hf_engine, llama_engine

    before = torch.get_num_threads()
    monkeypatch.setattr(hf_engine.HFEngine, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(llama_engine.LlamaCppEngine, "for_default_model", classmethod(lambda cls, *a, **k: "llama"))
    installed = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "llama_cpp" else installed(name))
    try:
        torch.set_num_threads(2)
        app.build_engine(settings_for(tmp_path, engine="transformers"), None, None)  # type: ignore[arg-type]
        assert torch.get_num_threads() == 2
        assert app.build_engine(settings_for(tmp_path, engine="llama.cpp"), None, None) == "llama"  # type: ignore[arg-type]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
