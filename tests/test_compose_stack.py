"""deploy/compose.yaml up for real: the bot's image, PostgreSQL and a chromadb server behind its token
proxy, with the real discord.py in the bot talking to the Discord emulator on this host. A question is
answered, a 👍 makes an example in the chroma server and the exchange lands in PostgreSQL; chromadb
answers the bot's container only through the proxy, and only with the token."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from secrets import token_hex

import pytest
import yaml

from adapters.streaming import WRITING
from tests.containers import BOT_IMAGE, IMAGE_TESTS, REPO, STAND_INS, run
from tests.emulators.discord_api import DiscordEmulator, wait_until

pytestmark = IMAGE_TESTS
COMPOSE = REPO / "deploy" / "compose.yaml"
Stack = tuple[str, str, DiscordEmulator, float]  # engine, compose project, emulator, seconds to ready


def compose_command(tool: str) -> list[str]:
    if tool == "podman":
        beside = Path(sys.executable).parent / "podman-compose"  # the test extra, in this virtualenv
        found = str(beside) if beside.exists() else shutil.which("podman-compose")
        if found is None:
            reason = "podman-compose is not installed (the test extra installs it)"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        return [found]
    return ["docker", "compose"]


@pytest.fixture(scope="module")
def stack(
    bot_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, DiscordEmulator, float]]:
    tool = bot_image
    if tool == "podman":
        run("bash", str(STAND_INS / "make-images.sh"), "postgres", "chroma", "nginx", timeout=1800)
    host = "host.containers.internal" if tool == "podman" else "host.docker.internal"
    emulator = DiscordEmulator(bind="0.0.0.0", advertised_host=host).start()
    admin = emulator.add_user("admin")
    override = tmp_path_factory.mktemp("compose") / "test.yaml"
    bot: dict = {
        "image": BOT_IMAGE,
        "environment": {
            "DISCORD_TOKEN": emulator.token,
            "DISCORD_API_URL": emulator.base_url,
            "DISCORD_GATEWAY_URL": emulator.gateway_url,
            "DISCORD_GUILD_ID": str(emulator.guild_id),
            "BOT_ADMINS": f"discord:{admin['id']}",
            "BOT_LOG_FORMAT": "text",
        },
    }
    if tool == "docker":
        bot["extra_hosts"] = [f"{host}:host-gateway"]
    override.write_text(yaml.safe_dump({"services": {"bot": bot}}))
    # compose.yaml requires the password (no default to forget): a fresh one, never in the checkout.
    passwords = override.with_name("test.env")
    passwords.write_text(f"POSTGRES_PASSWORD={token_hex(16)}\nCHROMA_TOKEN={token_hex(16)}\n")
    project = f"botstack{uuid.uuid4().hex[:6]}"
    files = ["-f", str(COMPOSE), "-f", str(override)]
    compose = [*compose_command(tool), "--env-file", str(passwords), "-p", project, *files]
    started = time.monotonic()
    run(compose[0], *compose[1:], "up", "-d", timeout=600)
    container = f"{project}_bot_1" if tool == "podman" else f"{project}-bot-1"
    try:
        ready = wait_until(lambda: _ready(tool, container), 600, what="the bot's /readyz in the stack", interval=2)
        assert ready
        yield tool, project, emulator, time.monotonic() - started
    finally:
        logs = run(tool, "logs", container, check=False, timeout=60)
        print(f"\n--- bot logs ---\n{logs.stdout[-4000:]}{logs.stderr[-4000:]}")
        run(compose[0], *compose[1:], "down", "-v", timeout=600, check=False)
        emulator.stop()


def _ready(tool: str, container: str) -> bool:
    probe = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/readyz', timeout=4)"
    return run(tool, "exec", container, "python", "-c", probe, check=False, timeout=60).returncode == 0


def test_a_message_is_answered_and_a_vote_lands_in_chroma_and_postgres(stack) -> None:
    tool, project, emulator, ready_s = stack
    print(f"\nstack up and ready in {ready_s:.0f} s")
    bot = f"{project}_bot_1" if tool == "podman" else f"{project}-bot-1"
    postgres = f"{project}_postgres_1" if tool == "podman" else f"{project}-postgres-1"
    for name in (postgres, f"{project}_chroma_1" if tool == "podman" else f"{project}-chroma-1"):
        health = run(tool, "healthcheck", "run", name, check=False) if tool == "podman" else None
        assert health is None or health.returncode == 0, (name, health.stdout, health.stderr)

    asker, voter = emulator.add_user("asker"), emulator.add_user("voter")
    asked = emulator.send_message(asker, f"{emulator.mention()} What is the capital of France?")
    [answer] = wait_until(lambda: emulator.replies_to(asked["id"]), 300, what="the bot's answer")
    wait_until(lambda: not emulator.messages[answer["id"]]["content"].endswith(WRITING), 300,
               what="the finished answer", interval=1)  # fmt: skip
    emulator.react(answer["id"], voter, "👍")

    def examples() -> list[dict]:
        listed = run(tool, "exec", bot, "bot", "examples", "list", "--json", check=False, timeout=120)
        return json.loads(listed.stdout) if listed.returncode == 0 else []

    [example] = wait_until(examples, 120, what="the voted example in the chroma server", interval=2)
    assert example["input"].endswith("What is the capital of France?") or "France" in example["input"]
    count = run(tool, "exec", postgres, "psql", "-U", "bot", "-d", "bot", "-tAc", "select count(*) from exchanges")
    assert int(count.stdout.strip()) == 1
    votes = run(tool, "exec", postgres, "psql", "-U", "bot", "-d", "bot", "-tAc", "select count(*) from votes")
    assert int(votes.stdout.strip()) == 1
    assert not Path(REPO / "deploy" / ".env").exists()  # nothing written into the checkout


# From inside the bot's container: the proxy without, with and with a wrong token, and chromadb's own
# port on the proxy's address (it listens on loopback there, so it must not answer).
PROBE = """
import json, os, urllib.error, urllib.request
def status(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__
version = "http://chroma-proxy:8000/api/v2/version"
print(json.dumps([status(version), status(version, os.environ["BOT_CHROMA_TOKEN"]), status(version, "wrong"),
                  status("http://chroma-proxy:8001/api/v2/heartbeat")]))  # chromadb's own port
"""


def test_chroma_answers_only_through_its_proxy_and_only_with_the_token(stack) -> None:
    tool, project, _emulator, _ready_s = stack
    bot = f"{project}_bot_1" if tool == "podman" else f"{project}-bot-1"
    probed = run(tool, "exec", bot, "python", "-c", PROBE, timeout=60)
    without, with_token, wrong, direct = json.loads(probed.stdout)
    assert (without, with_token, wrong) == (401, 200, 401)
    assert not isinstance(direct, int), f"chromadb itself answered the bot's container: {direct}"
