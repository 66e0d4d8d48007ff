"""deploy/k8s rendered through kustomize, as `kubectl apply -k` renders it (offline), and the bot's pods
held to what tests/test_container.py proves the image runs with: its user, no capabilities, no
privilege escalation, a read-only root, writes under /data and /tmp only."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.containers import LOCKED_DOWN

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
IMAGE_USER = 10001  # deploy/Dockerfile's USER
WRITABLE = {"/data", "/tmp"}  # what the container test mounts writable (the rest is --read-only)


def rendered() -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is needed to render deploy/k8s in CI")
        pytest.skip("kubectl is not installed (it renders deploy/k8s with its built-in kustomize)")
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod template of every workload running the bot's image, by workload name."""
    specs = {}
    for doc in docs:
        template = doc.get("spec", {}).get("template") or doc.get("spec", {}).get("jobTemplate", {}).get("spec", {})
        template = template.get("template", template)
        spec = template.get("spec")
        if spec and any("learning-chat-bot" in c["image"] for c in spec.get("containers", [])):
            specs[doc["metadata"]["name"]] = spec
    return specs


def test_kustomize_renders_every_resource_in_the_namespace_with_the_image_tag() -> None:
    docs = rendered()
    assert {d["kind"] for d in docs} >= {"Namespace", "Deployment", "StatefulSet", "Service", "CronJob"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"chat-bot"}
    images = {c["image"] for spec in pod_specs(docs).values() for c in spec["containers"]}
    assert images == {"learning-chat-bot:0.1.0"}


def test_the_bot_pods_run_as_the_container_test_runs_the_image() -> None:
    assert {"--cap-drop", "--read-only", "no-new-privileges"} <= set(LOCKED_DOWN)  # what was proven
    specs = pod_specs(rendered())
    assert {"bot", "bot-retrain"} <= set(specs)
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] and pod["runAsUser"] == IMAGE_USER and pod["fsGroup"] == IMAGE_USER, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert security["readOnlyRootFilesystem"] is True, name
            mounts = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
            assert mounts >= WRITABLE and all(any(m.startswith(w) for w in WRITABLE) for m in mounts), (name, mounts)
