"""Who may reach whom in the deployment, and with what credential (docs/deploy.md, "Network policies
and secrets"). deploy/k8s as `kubectl apply -k` renders it: a NetworkPolicy for every workload, the
stores open to the bot and the trainer only, chromadb behind its token proxy, vLLM with `--api-key`,
every credential from a Secret the kustomization does not ship. deploy/compose.yaml: nothing
published but the bot's health port, on loopback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_k8s_render import rendered

CLIENTS = {"bot", "bot-retrain"}  # the pods that use PostgreSQL, chromadb and vLLM
STORES = ("postgres", "chroma", "vllm")
NAME = "app.kubernetes.io/name"
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def documented_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, from docs/deploy.md's `kubectl -n chat-bot create secret generic` commands:
    the kustomization ships no Secret (an apply would overwrite the operator's), the docs make them."""
    secrets: dict[str, set[str]] = {}
    text = (DEPLOY.parent / "docs" / "deploy.md").read_text().replace("\\\n", " ")
    for name, rest in re.findall(r"kubectl -n chat-bot create secret generic ([\w-]+)(.*)", text):
        secrets.setdefault(name, set()).update(re.findall(r"--from-literal=(\w+)=", rest))
    return secrets


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return rendered()


def pod_template(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]
    return spec.get("template") if doc["kind"] in ("Deployment", "StatefulSet", "Job") else None


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod template of every workload, by the pods' app.kubernetes.io/name."""
    return {t["metadata"]["labels"][NAME]: t for doc in docs if (t := pod_template(doc)) is not None}


def policies(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == "NetworkPolicy"]


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert set(selector) <= {"matchLabels"}, "plain label selectors only"
    return selector.get("matchLabels", {}).items() <= labels.items()


def admitted(docs: list[dict[str, Any]], name: str) -> tuple[set[str], set[int | str]]:
    """(the app names that may connect, the ports) over every policy selecting `name`'s pods;
    "*" in the first set: any source."""
    labels = workloads(docs)[name]["metadata"]["labels"]
    sources: set[str] = set()
    ports: set[int | str] = set()
    for policy in policies(docs):
        if not selects(policy, labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports |= {port["port"] for port in rule.get("ports", [])}
            if "from" not in rule:
                sources.add("*")
            for peer in rule.get("from", []):
                assert set(peer) == {"podSelector"}, f"{name}: only pods of this namespace, by label"
                sources.add(peer["podSelector"]["matchLabels"][NAME])
    return sources, ports


def container(docs: list[dict[str, Any]], app: str, name: str) -> dict[str, Any]:
    spec = workloads(docs)[app]["spec"]
    (found,) = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name]
    return found


def secret_env(c: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Variable -> (Secret, key) for each variable a container takes from a Secret."""
    return {
        var["name"]: (ref["name"], ref["key"])
        for var in c.get("env", [])
        if (ref := var.get("valueFrom", {}).get("secretKeyRef"))
    }


def test_ingress_is_denied_by_default_and_every_workload_has_its_policy(docs) -> None:
    deny = [p for p in policies(docs) if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1 and deny[0]["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in deny[0]["spec"]
    for name, template in workloads(docs).items():
        own = [p for p in policies(docs) if p["spec"]["podSelector"] and selects(p, template["metadata"]["labels"])]
        assert own or name == "bot-retrain", f"{name}: no NetworkPolicy of its own"
        assert all(p["spec"]["policyTypes"] == ["Ingress"] for p in own)
    assert set(workloads(docs)) == {"bot", "bot-retrain", *STORES}


def test_the_stores_admit_only_the_bot_and_the_trainer_on_their_port(docs) -> None:
    for store in STORES:
        sources, ports = admitted(docs, store)
        # The trainer's gate answers on a model of its own, never on the users' vLLM server.
        assert sources == (CLIENTS - {"bot-retrain"} if store == "vllm" else CLIENTS), (store, sources)
        served = {p["name"] for c in workloads(docs)[store]["spec"]["containers"] for p in c.get("ports", [])}
        assert len(ports) == 1 and ports <= served, (store, ports, served)
    assert admitted(docs, "bot-retrain") == (set(), set()), "nothing connects to the trainer"


def test_the_bot_admits_its_metrics_and_slack_ports_only(docs) -> None:
    sources, ports = admitted(docs, "bot")
    declared = {p["name"] for p in container(docs, "bot", "bot")["ports"]}
    assert sources == {"*"} and ports == {"metrics", "slack-http"} == declared - {"console"}
    # The console: a Service for `kubectl port-forward`, and no policy admits a pod to it.
    (service,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "bot-console"]
    assert service["spec"]["type"] == "ClusterIP" and [p["targetPort"] for p in service["spec"]["ports"]] == ["console"]


def test_no_secret_is_rendered_and_each_credential_comes_from_one(docs) -> None:
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"] == []
    for app in CLIENTS:
        env = secret_env(container(docs, app, "trainer" if app == "bot-retrain" else "bot"))
        assert env["PGPASSWORD"] == ("postgres", "POSTGRES_PASSWORD")
        assert env["BOT_CHROMA_TOKEN"] == ("chroma", "CHROMA_TOKEN")
    assert secret_env(container(docs, "bot", "bot"))["BOT_VLLM_API_KEY"] == ("vllm", "VLLM_API_KEY")
    assert "BOT_VLLM_API_KEY" not in secret_env(container(docs, "bot-retrain", "trainer"))
    assert secret_env(container(docs, "postgres", "postgres"))["POSTGRES_PASSWORD"] == ("postgres", "POSTGRES_PASSWORD")


def test_vllm_requires_the_api_key_of_its_secret(docs) -> None:
    vllm = container(docs, "vllm", "vllm")
    assert "--api-key=$(VLLM_API_KEY)" in vllm["args"]
    assert secret_env(vllm)["VLLM_API_KEY"] == ("vllm", "VLLM_API_KEY")
    assert {p["path"] for p in (vllm["readinessProbe"]["httpGet"], vllm["livenessProbe"]["httpGet"])} == {"/health"}


def test_chroma_listens_on_loopback_behind_a_proxy_that_checks_the_token(docs) -> None:
    chroma, proxy = container(docs, "chroma", "chroma"), container(docs, "chroma", "auth-proxy")
    args = chroma["args"]
    assert args[args.index("--host") + 1] == "127.0.0.1" and "ports" not in chroma, "reachable through the proxy only"
    upstream = args[args.index("--port") + 1]
    assert secret_env(proxy)["CHROMA_TOKEN"] == ("chroma", "CHROMA_TOKEN")
    assert 'test -n "$CHROMA_TOKEN"' in proxy["args"][0], "an empty token would admit `Bearer ` from anyone"
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "chroma-auth-proxy"]
    template = config["data"]["default.conf.template"]
    assert '"Bearer ${CHROMA_TOKEN}" 1;' in template and "return 401;" in template
    assert template.count("proxy_pass http://${CHROMA_UPSTREAM};") == 2
    assert {v["name"]: v.get("value") for v in proxy["env"]}["CHROMA_UPSTREAM"] == f"127.0.0.1:{upstream}"
    mounts = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}
    volumes = {v["name"]: v for v in workloads(docs)["chroma"]["spec"]["volumes"]}
    assert volumes[mounts["/etc/nginx/templates"]]["configMap"]["name"] == "chroma-auth-proxy"
    (service,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "chroma"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert {p["name"] for p in proxy["ports"]} == {"http"}, "the Service's port is the proxy's"


# --- Compose ------------------------------------------------------------------------------------


def test_compose_publishes_only_the_bots_health_port_on_loopback() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert published == {"bot": ["127.0.0.1:9090:9090"]}, published
    assert all("expose" not in service for service in services.values())
    # No host network: a service shares only another service's namespace (chroma, its proxy's).
    assert all(service.get("network_mode", "service:").startswith("service:") for service in services.values())
    # The commented Slack HTTP line, once uncommented, binds loopback too.
    assert '# - "127.0.0.1:3000:3000"' in (DEPLOY / "compose.yaml").read_text()
    assert '# - "127.0.0.1:8400:8400"' in (DEPLOY / "compose.yaml").read_text(), "the console, on loopback too"


def test_compose_reaches_chroma_only_through_its_token_proxy() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    bot, chroma = services["bot"], services["chroma"]
    # chromadb checks no token: it listens on loopback in its proxy's network namespace (the pod's
    # sidecar layout), and the bot reaches it through the proxy with the token, required from deploy/.env.
    proxy = services["chroma-proxy"]
    assert chroma["network_mode"] == "service:chroma-proxy" and "ports" not in chroma
    args = chroma["command"]
    upstream = f"{args[args.index('--host') + 1]}:{args[args.index('--port') + 1]}"
    assert upstream.startswith("127.0.0.1:") and proxy["environment"]["CHROMA_UPSTREAM"].startswith(upstream)
    assert upstream in chroma["healthcheck"]["test"][-1]
    token = proxy["environment"]["CHROMA_TOKEN"]
    assert bot["environment"]["BOT_CHROMA_TOKEN"] == token and token.startswith("${CHROMA_TOKEN:?")
    template = proxy["volumes"][0].split(":")[0]
    assert (DEPLOY / template).resolve() == DEPLOY / "k8s" / "chroma-auth-proxy.conf.template", "the pod's check"
