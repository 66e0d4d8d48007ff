"""The CPU image (deploy/Dockerfile, LLAMA=1) built and run as its users run it: no network, no
capabilities, a read-only root, its own user, the data on a volume. Skipped without a container
engine, failing under CI (tests/containers.py)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers import BOT_IMAGE, IMAGE_TESTS, LOCKED_DOWN, env, in_image, run, volume

pytestmark = IMAGE_TESTS
FACTS = Path(__file__).parent / "data" / "container_facts.jsonl"


@pytest.fixture(scope="module")
def image(bot_image: str) -> str:
    return bot_image


@pytest.fixture
def data(image: str) -> Iterator[str]:
    name = volume(image)
    yield name
    run(image, "volume", "rm", "-f", name, check=False)


def test_the_image_runs_as_its_own_user_with_a_closed_data_directory(image: str, data: str) -> None:
    result = in_image(image, data, "python", "-c", "import os, stat; print(os.getuid(), oct(os.stat('/data').st_mode))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10001", "0o40700"]


def test_doctor_names_llama_cpp_with_the_cpu_kernels_it_loaded(image: str, data: str) -> None:
    result = in_image(image, data, "bot", "doctor")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "llama.cpp (setting: auto; CPU kernels: the " in text, result.stdout  # the variant loaded, by name
    assert " build)" in text


def test_ask_answers_through_llama_cpp_as_the_image_user(image: str, data: str) -> None:
    """It crashed as uid 10001 (model files written 0600 by root) and, with that fixed, quietly
    answered through transformers (llama.cpp found no CPU engine)."""
    result = in_image(image, data, "bot", "ask", "Say hello in one short sentence.", "--json")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["reply"].strip() and reply["engine"].startswith("llama.cpp"), reply


def test_a_retrain_inside_the_container_is_promoted_and_its_lora_serves(image: str, data: str) -> None:
    """Every retrain failed in the image: the LoRA's GGUF was written into the read-only model cache."""
    mount = ("-v", f"{FACTS}:/facts.jsonl:ro")
    imported = in_image(image, data, "bot", "examples", "import", "/facts.jsonl", extra=mount)
    assert imported.returncode == 0, imported.stderr
    trained = in_image(image, data, "bot", "retrain", "--json", timeout=1800)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    result = json.loads(trained.stdout)
    assert "promoted and now serving" in result["text"], result["text"]
    asked = in_image(image, data, "bot", "ask", "Which floor is the Oslo office on?", "--json")
    reply = json.loads(asked.stdout)
    assert reply["lora_version"] == "v0001" and reply["engine"].startswith("llama.cpp"), reply
    assert "7" in reply["reply"], reply


def test_stop_ends_the_bot_within_two_seconds_with_exit_0(image: str, data: str) -> None:
    """The bot was PID 1 and ignored SIGTERM: `docker stop` waited its 10 s and killed it (137)."""
    name = f"bot-stop-{data}"
    process = subprocess.Popen(
        [image, "run", "--rm", "-i", "--name", name, *LOCKED_DOWN, "-v", f"{data}:/data", BOT_IMAGE, "bot", "run"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(),
    )  # fmt: skip
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + 300
    while "Chat with the bot" not in seen and time.monotonic() < deadline:  # the terminal chat, on an open stdin
        seen += process.stdout.readline()
    assert "Chat with the bot" in seen, seen
    started = time.monotonic()
    run(image, "stop", "--time", "10", name)
    code = process.wait(timeout=30)
    took = time.monotonic() - started
    print(f"\nstop took {took:.2f} s, exit {code}")
    assert code == 0 and took < 2.0, (code, took)


def test_a_start_with_no_token_and_no_terminal_says_what_is_missing_and_fails(image: str, data: str) -> None:
    """Under compose it read end of input, exited 0 and was restarted, 21 times in 4 minutes."""
    result = in_image(image, data, "bot", "run")
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN" in result.stderr and "DISCORD_TOKEN" in result.stderr
