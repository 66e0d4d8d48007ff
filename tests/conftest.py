"""Shared fixtures: a core on fakes (fast) and a core on the real default model (loaded once)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.core import Core
from bot.stores.examples import ExampleStore
from bot.stores.feedback import FeedbackStore
from bot.wiring import assemble_core
from tests.fakes import FakeEmbedder, FakeEngine

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "bench" / "data"  # the sample fact sets ship in the repository
# One converted copy of the default model for every test run on this checkout.
MODEL_CACHE = Path(os.environ.get("BOT_TEST_MODEL_CACHE", REPO / ".cache" / "models"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: end-to-end on the real default model (make test runs them)")


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    overrides.setdefault("admins", ["console:local"])
    return load_settings(env={}, data_dir=str(data_dir), model_cache=str(MODEL_CACHE), **overrides)


def tuned(settings: Settings, **values: Any) -> Settings:
    """`settings` with these `tuning` values (the measured ones a test varies)."""
    return settings.model_copy(update={"tuning": settings.tuning.model_copy(update=values)})


MakeCore = Callable[..., Core]


@pytest.fixture
def make_core(tmp_path: Path) -> Iterator[MakeCore]:
    """make_core(generator=None, admins=(...), examples=None, **settings) -> Core on a FakeEngine and
    FakeEmbedder (`examples`: another example store, e.g. one on a chromadb server)."""
    cores: list[Core] = []

    def factory(
        generator: FakeEngine | None = None,
        admins: tuple[str, ...] = ("console:local",),
        examples: ExampleStore | None = None,
        **overrides: Any,
    ) -> Core:
        overrides.setdefault("tuning__min_similarity", 0.2)
        data_dir = tmp_path / f"data{len(cores)}"
        settings = test_settings(data_dir, admins=list(admins), **overrides)
        examples = examples or ExampleStore(FakeEmbedder(), data_dir / "chroma")
        cores.append(assemble_core(settings, generator or FakeEngine(), examples))
        return cores[-1]

    yield factory
    _close(cores)


def _close(cores: list[Core]) -> None:
    for core in cores:
        core.generation.close()
    for core in cores:
        core.store.close()


# The real default model, loaded once per test session ---------------------------------------


@pytest.fixture(scope="session")
def real_files():
    from bot.generation.model_files import prepare_model

    return prepare_model(test_settings(REPO / ".cache" / "unused"))


@pytest.fixture(scope="session")
def real_engine(real_files):
    from bot.generation.hf_engine import HFEngine

    return HFEngine(test_settings(REPO / ".cache" / "unused"), real_files)


def require_llama_cpp() -> None:
    """Skip a test that needs llama-cpp-python where it is not installed; under CI, fail instead."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        reason = "llama-cpp-python is not installed (`make test EXTRAS=test,llama` builds it: about 9 minutes)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run this test")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def real_llama_engine(real_files):
    """The llama.cpp engine on the default model's GGUF, loaded once."""
    require_llama_cpp()
    from bot.generation.llama_engine import LlamaCppEngine

    return LlamaCppEngine.for_default_model(test_settings(REPO / ".cache" / "unused"), real_files)


# The engine under a real core: transformers unless a test asks for each (`BOTH_ENGINES`).
@pytest.fixture(params=["transformers"])
def serving_engine(request: pytest.FixtureRequest) -> str:
    return request.param


BOTH_ENGINES = pytest.mark.parametrize("serving_engine", ["transformers", "llama.cpp"], indirect=True)


@pytest.fixture(scope="session")
def real_embedder():
    from bot.embedder import SentenceEmbedder

    return SentenceEmbedder()


@pytest.fixture
def make_real_core(
    request: pytest.FixtureRequest, tmp_path: Path, serving_engine: str, real_embedder, real_files
) -> Iterator[MakeCore]:
    """make_real_core(data_dir=None, **settings) -> Core on the real default model (4-bit through
    transformers, or llama.cpp: `serving_engine`), real chromadb, SQLite.

    Calling it twice with the same data_dir is a restart: new stores on the same files.
    """
    from bot.stores.lora_registry import LoraRegistry

    real_engine = request.getfixturevalue("real_engine" if serving_engine == "transformers" else "real_llama_engine")
    cores: list[Core] = []

    def factory(data_dir: Path | None = None, admins: tuple[str, ...] = ("console:local",), **overrides: Any) -> Core:
        for core in cores:  # one worker drives the shared model at a time
            core.generation.close()
        data_dir = data_dir or tmp_path / "data"
        # The training process answers its gate on the same engine (bot/finetune/gate.py).
        settings = test_settings(data_dir, admins=list(admins), **{"engine": serving_engine, **overrides})
        registry = LoraRegistry.open(settings, real_files.fingerprint)
        real_engine.settings = settings
        real_engine.loras.source = registry.active_lora
        examples = ExampleStore(real_embedder, data_dir / "chroma")
        cores.append(assemble_core(settings, real_engine, examples, registry=registry))
        cores[-1].generation.request_sync().result(timeout=120)
        return cores[-1]

    yield factory
    _close(cores)
    real_engine.loras.source = None
    real_engine.loras.sync()


@pytest.fixture
def real_core(make_real_core: MakeCore) -> Core:
    """A core on the real default model with a fresh data directory."""
    return make_real_core()


@pytest.fixture(scope="session")
def random_loras(real_files, tmp_path_factory) -> list[Path]:
    """Two LoRAs with random (non-zero) weights, saved as training would save them."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(real_files.path, dtype=torch.float32)
        config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        model = get_peft_model(base, config)
        path = tmp_path_factory.mktemp(f"lora{seed}")
        model.save_pretrained(path)
        out.append(path)
    return out


def commit_lora(registry, source: Path) -> str:
    """Commit a copy of a saved LoRA directory as a new registry version."""
    staging = registry.new_staging()
    for file in source.iterdir():
        (staging / file.name).write_bytes(file.read_bytes())
    return registry.commit(staging, {"note": "random weights for a test"}).version


# A real chromadb server (`chroma run`) on loopback, for the client/server example store ------------


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a `chroma run` started for this test session (bot setting `chroma_url`)."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path_factory.mktemp("chroma") / "server.log").open("wb")
    data = tmp_path_factory.mktemp("chroma-data")
    server = subprocess.Popen(
        [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"`chroma run` did not start; see {log.name}") from None
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


# The feedback store on each engine -----------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server's URL (tests/postgres.py says where it comes from)."""
    from tests.postgres import server

    with server(tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A `postgresql://` URL on a fresh schema of its own, dropped after the test."""
    from tests.postgres import scratch_schema

    with scratch_schema(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The `database_url` setting, once per engine: "" (SQLite in the data directory) or PostgreSQL."""
    return "" if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture
def feedback_store(database_url: str, tmp_path: Path) -> Iterator[FeedbackStore]:
    """A fresh feedback store, once on SQLite and once on PostgreSQL."""
    store = FeedbackStore(database_url or tmp_path / "feedback.sqlite3")
    yield store
    store.close()


@pytest.fixture(scope="session")
def bot_image() -> str:
    """The CPU image (deploy/Dockerfile) built once a session; the container engine's name."""
    from tests.containers import BOT_IMAGE, build_bot_image, require_engine, run

    tool = require_engine()
    seconds = build_bot_image(tool)
    size = run(tool, "image", "inspect", BOT_IMAGE, "--format", "{{.Size}}").stdout.strip()
    print(f"\nbuilt {BOT_IMAGE} in {seconds:.0f} s, {int(size) / 1e9:.2f} GB")
    return tool
