"""The serving model's regression scores, kept so that a retrain does not ask them again.

The gate compares a candidate with the LoRA serving now (or the base model) on the held-out
examples, which change with every dataset, and on the regression set, which does not. The serving
model's regression report was measured when it was itself a candidate (it is in its manifest) or,
for the base model, by an earlier run (<loras>/base_regression.json). It is reused only when
everything that shapes those answers is unchanged: the base weights, the regression file and the
answer settings. The example store is left out on purpose: regression questions are general ones
that retrieval seldom matches, and keying on it would miss the cache on every retrain.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from bot.config import Settings
from bot.evaluation import EvalReport

BASE_FILE = "base_regression.json"
ANSWER_SETTINGS = (
    "system_prompt",
    "example_layout",
    "retrieval_k",
    "min_similarity",
    "dedup_similarity",
    "max_new_tokens",
    "temperature",
    "no_repeat_ngram",
    "repetition_penalty",
    "context_tokens",
)


def regression_key(settings: Settings, base_fingerprint: str, regression_path: Path) -> str:
    answer_settings = {name: getattr(settings, name) for name in ANSWER_SETTINGS}
    digest = hashlib.sha256(json.dumps([base_fingerprint, answer_settings], sort_keys=True).encode())
    digest.update(regression_path.read_bytes())
    return digest.hexdigest()[:16]


def cached_regression(registry_root: Path, active: tuple[str, Path] | None, key: str) -> EvalReport | None:
    """The serving model's regression report for `key`, or None when it must be measured."""
    try:
        if active is None:
            saved = json.loads((registry_root / BASE_FILE).read_text())
            report, saved_key = saved.get("report"), saved.get("key")
        else:
            manifest = json.loads((active[1] / "manifest.json").read_text())
            report, saved_key = manifest.get("eval", {}).get("candidate"), manifest.get("regression_key")
    except (OSError, json.JSONDecodeError):
        return None
    if saved_key != key or not report:
        return None
    return EvalReport(report["regression_hits"], report["regression_total"], list(report.get("regression_misses", [])))


def remember_base_regression(registry_root: Path, key: str, report: EvalReport) -> None:
    """Keep the base model's report (written atomically: a reader sees the old file or the new)."""
    registry_root.mkdir(parents=True, exist_ok=True)
    data = {"key": key, "report": {"regression_hits": report.hits, "regression_total": report.total,
                                   "regression_misses": report.misses}}  # fmt: skip
    fd, tmp = tempfile.mkstemp(dir=registry_root, prefix=f".{BASE_FILE}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, registry_root / BASE_FILE)
