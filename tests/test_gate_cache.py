"""The gate reuses the serving model's regression report only while nothing that shapes it changed."""

from __future__ import annotations

import json
from pathlib import Path

from bot.evaluation import EvalReport
from bot.finetune.gate import gate_scores
from bot.finetune.gate_cache import cached_regression, regression_key
from bot.training.dataset import REGRESSION_FILE, Pair
from tests.conftest import test_settings as settings_for
from tests.conftest import tuned


def test_the_key_follows_answer_settings_base_weights_and_the_regression_file(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    key = regression_key(settings, "weights-a", REGRESSION_FILE, "transformers")
    assert regression_key(settings, "weights-a", REGRESSION_FILE, "transformers") == key
    assert regression_key(settings, "weights-b", REGRESSION_FILE, "transformers") != key
    assert regression_key(tuned(settings, min_similarity=0.3), "weights-a", REGRESSION_FILE, "transformers") != key
    other = tmp_path / "regression.jsonl"
    other.write_text(REGRESSION_FILE.read_text() + '{"question": "One more?", "expect_any": ["yes"]}\n')
    assert regression_key(settings, "weights-a", other, "transformers") != key
    # Training settings do not shape the serving model's answers.
    trained = settings.model_copy(update={"training": settings.training.model_copy(update={"epochs": 9})})
    assert regression_key(trained, "weights-a", REGRESSION_FILE, "transformers") == key
    assert regression_key(settings, "weights-a", REGRESSION_FILE, "llama.cpp") != key  # another engine's answers


def test_reports_come_from_the_serving_versions_manifest(tmp_path: Path) -> None:
    assert cached_regression(None, "k1") is None  # the base model's replies are cached one by one instead
    version = tmp_path / "v0001"
    version.mkdir()
    assert cached_regression(("v0001", version), "k1") is None  # no manifest
    manifest = {"regression_key": "k1", "eval": {"candidate": {"regression_hits": 55, "regression_total": 56}}}
    (version / "manifest.json").write_text(json.dumps(manifest))
    assert cached_regression(("v0001", version), "k1") == EvalReport(55, 56, [])
    assert cached_regression(("v0001", version), "k2") is None


def test_a_cached_report_asks_only_the_held_out_questions() -> None:
    asked: list[str] = []

    def answer(_conversation: str, question: str) -> str:
        asked.append(question)
        return "The link expires after 30 minutes."

    heldout = [Pair("How long is the link valid?", "It expires after 30 minutes.", "import", "e1")]
    scores = gate_scores(answer, heldout, REGRESSION_FILE, regression=EvalReport(40, 56, []))
    assert asked == ["How long is the link valid?"]
    assert scores.regression_report.hits == 40 and scores.heldout == 1.0
