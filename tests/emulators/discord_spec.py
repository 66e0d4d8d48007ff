"""Discord's published OpenAPI description, the part the bot uses, to check every request it sends.

The tests run offline, so the operations the bot calls (`USED`), with the schemas their JSON request
bodies refer to, are kept in `tests/data/discord_openapi.json` with the commit of the public
repository discord/discord-api-spec they came from (MIT licence). The Discord emulator checks each
request body against them (`SpecCheck.violations`), and the emulator's fixture fails the test on one.
One deviation is kept on purpose: a snowflake may be a JSON integer as well as a string
(`INTEGER_SNOWFLAKE`), as Discord accepts and discord.py sends.

To take a newer description: clone discord/discord-api-spec and run

    .venv/bin/python -m tests.emulators.discord_spec PATH/TO/specs/openapi.json COMMIT
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUBSET = Path(__file__).resolve().parent.parent / "data" / "discord_openapi.json"
SOURCE = "https://github.com/discord/discord-api-spec (specs/openapi.json, MIT)"
# The description types a snowflake as a decimal string; Discord accepts the same number as a JSON
# integer in requests, and discord.py sends some that way (a reply's message_reference): allowed too.
INTEGER_SNOWFLAKE = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
# (method, path template) of every REST call the bot makes that carries a JSON body.
USED = (
    ("POST", "/channels/{channel_id}/messages"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("POST", "/interactions/{interaction_id}/{interaction_token}/callback"),
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("PUT", "/applications/{application_id}/commands"),
    ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"),
)


def extract(spec: dict[str, Any], commit: str) -> dict[str, Any]:
    """The JSON request schemas of USED and every component schema they reach."""
    operations: dict[str, Any] = {}
    for method, path in USED:
        body = spec["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
        operations[f"{method} {path}"] = body
    schemas = spec["components"]["schemas"]
    kept: dict[str, Any] = {}
    pending = _refs(operations)
    while pending:
        name = pending.pop()
        if name not in kept:
            kept[name] = schemas[name]
            pending |= _refs(schemas[name])
    if "SnowflakeType" in kept:  # the one deviation, written down: see the module's docstring
        kept["SnowflakeType"] = {"anyOf": [kept["SnowflakeType"], INTEGER_SNOWFLAKE]}
    return {"source": SOURCE, "commit": commit, "openapi": spec["openapi"], "operations": operations,
            "components": {"schemas": dict(sorted(kept.items()))}}  # fmt: skip


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


@dataclass(frozen=True)
class Violation:
    method: str
    path: str
    message: str


class SpecCheck:
    """Validates request bodies against the kept description; collects what does not conform."""

    def __init__(self, subset: Path = SUBSET) -> None:
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        document = json.loads(subset.read_text(encoding="utf-8"))
        self.commit = document["commit"]
        root = {"components": document["components"]}
        registry = Registry().with_resource("urn:discord", Resource(root, specification=DRAFT202012))
        self._checks = []
        for operation, schema in document["operations"].items():
            method, template = operation.split(" ", 1)
            pattern = re.compile(re.sub(r"\{[a-z_]+\}", "[^/]+", template))  # templates hold no other specials
            self._checks.append((method, pattern, Draft202012Validator(schema, registry=registry)))
        self.violations: list[Violation] = []
        self.checked = 0

    def check(self, method: str, path: str, body: Any) -> None:
        """Check one request (path after the API version prefix); only operations in USED are known."""
        for wanted, pattern, validator in self._checks:
            if wanted == method and pattern.fullmatch(path):
                self.checked += 1
                for error in validator.iter_errors(body):
                    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
                    self.violations.append(Violation(method, path, f"{where}: {error.message[:300]}"))
                return


def _rebase(node: Any) -> Any:
    """Local `#/components/...` references pointed at the checker's registry (done once, at extraction)."""
    if isinstance(node, dict):
        return {k: ("urn:discord" + v if k == "$ref" and isinstance(v, str) and v.startswith("#/") else _rebase(v))
                for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [_rebase(item) for item in node]
    return node


def main(argv: list[str]) -> int:
    spec_path, commit = Path(argv[0]), argv[1]
    subset = _rebase(extract(json.loads(spec_path.read_text(encoding="utf-8")), commit))
    SUBSET.write_text(json.dumps(subset, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{SUBSET}: {len(subset['operations'])} operations, {len(subset['components']['schemas'])} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
