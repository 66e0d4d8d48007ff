"""Building and running the project's images in the tests, with podman or Docker, whichever is here.

Where Docker Hub cannot be reached, the base images are local stand-ins made from Debian's packages
(deploy/stand-ins/make-images.sh). Without a container engine the container tests are skipped with
the reason, except under CI, where they fail: CI must prove the image works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAND_INS = REPO / "deploy" / "stand-ins"
BOT_IMAGE = "localhost/learning-chat-bot:test"
BUILD_TIMEOUT_S = 3600
# The first test that uses the image pays for building it. Uncached, that compiles llama.cpp for
# every CPU variant: past the suite's 900 s a test on a busy 2-core machine (all 8 image tests
# once timed out in their setup). Each command these tests run has its own timeout.
IMAGE_TESTS = [pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 900)]


def engine() -> str | None:
    """podman (preferred: no daemon) or docker, if one can run containers here."""
    for name in ("podman", "docker"):
        if shutil.which(name) and subprocess.run([name, "info"], capture_output=True, env=env()).returncode == 0:
            return name
    return None


def env() -> dict[str, str]:
    """podman's settings for sandboxed machines (runc, cgroupfs, rlimits it may set), unless the
    machine names its own."""
    return {"CONTAINERS_CONF": str(STAND_INS / "containers.conf"), **os.environ}


def require_engine() -> str:
    found = engine()
    if found is None:
        reason = "no container engine (podman or docker) runs here: deploy/stand-ins/install-podman.sh"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must build and run the image")
        pytest.skip(reason)
    return found


def run(tool: str, *args: str, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout, env=env(), **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def build_bot_image(tool: str) -> float:
    """Build deploy/Dockerfile (the CPU image, LLAMA=1) as BOT_IMAGE; returns the seconds it took.
    Layers and the llama.cpp wheel come from the engine's cache after the first build."""
    started = time.monotonic()
    if tool == "podman":
        run("bash", str(STAND_INS / "make-images.sh"), "python", timeout=900)
        run("bash", str(STAND_INS / "podman-build.sh"), *torch_index_arg(), "-f", "deploy/Dockerfile",
            "-t", BOT_IMAGE, ".", cwd=REPO, timeout=BUILD_TIMEOUT_S)  # fmt: skip
    else:
        run(tool, "build", "-f", "deploy/Dockerfile", "-t", BOT_IMAGE, ".", cwd=REPO, timeout=BUILD_TIMEOUT_S)
    return time.monotonic() - started


def torch_index_arg() -> list[str]:
    """The CPU torch wheel lies in /opt/wheels on these machines, and torch's own index is not
    reached from them: the image's pip then asks the host's default index (torch from the wheel)."""
    if not Path("/opt/wheels").is_dir():
        return []
    from pip._internal.models.index import PyPI

    return ["--build-arg", f"TORCH_INDEX={PyPI.simple_url}"]


# How every test runs the image: as Kubernetes runs it (deploy/k8s/bot.yaml), and tighter.
LOCKED_DOWN = ("--network", "none", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only",
               "--tmpfs", "/tmp")  # fmt: skip


def volume(tool: str) -> str:
    name = f"bot-test-{uuid.uuid4().hex[:8]}"
    run(tool, "volume", "create", name)
    return name


def in_image(tool: str, data: str, *command: str, extra: Sequence[str] = (), timeout: float = 900):
    """Run `command` in a fresh, locked-down container of the bot's image with `data` on /data."""
    return run(tool, "run", "--rm", *LOCKED_DOWN, "-v", f"{data}:/data", *extra, BOT_IMAGE, *command,
               timeout=timeout, check=False)  # fmt: skip
