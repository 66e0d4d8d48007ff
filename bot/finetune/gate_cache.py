"""The serving LoRA's regression scores, kept so that a retrain does not ask them again.

The gate compares a candidate with the LoRA serving now (or the base model) on the held-out
examples, which change with every dataset, and on the regression set, which does not. A serving
LoRA's regression report was measured when it was itself a candidate and is in its manifest. It is
reused only when everything that shapes those answers is unchanged: the base weights, the
regression file, the answer settings and the engine. The example store is left out on purpose: regression
questions are general ones that retrieval seldom matches, and keying on it would miss the cache on
every retrain. (The base model's replies are kept by bot/finetune/base_replies.py instead.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bot.config import Settings
from bot.evaluation import EvalReport
from bot.stores.examples import DEDUP_SIMILARITY

ANSWER_SETTINGS = ("system_prompt", "max_new_tokens", "context_tokens")
ANSWER_TUNING = ("retrieval_k", "min_similarity", "temperature", "no_repeat_ngram", "repetition_penalty")
ANSWER_TUNING += ("answer_bias", "lora_for")


def regression_key(settings: Settings, base_fingerprint: str, regression_path: Path, engine: str) -> str:
    """`engine`: the one the gate answers on (bot/finetune/gate.py gate_engine); the engines' replies differ."""
    answer_settings = {name: getattr(settings, name) for name in ANSWER_SETTINGS}
    answer_settings |= {name: getattr(settings.tuning, name) for name in ANSWER_TUNING}
    answer_settings["dedup_similarity"] = DEDUP_SIMILARITY  # fixed, but a change in the code changes answers
    digest = hashlib.sha256(json.dumps([base_fingerprint, answer_settings, engine], sort_keys=True).encode())
    digest.update(regression_path.read_bytes())
    return digest.hexdigest()[:16]


def cached_regression(active: tuple[str, Path] | None, key: str) -> EvalReport | None:
    """The serving LoRA's regression report for `key`, or None when it must be measured."""
    if active is None:
        return None  # the base model's replies come back from bot/finetune/base_replies.py
    try:
        manifest = json.loads((active[1] / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    report, saved_key = manifest.get("eval", {}).get("candidate"), manifest.get("regression_key")
    if saved_key != key or not report:
        return None
    return EvalReport(report["regression_hits"], report["regression_total"], list(report.get("regression_misses", [])))
