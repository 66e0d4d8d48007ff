"""Other phrasings of training questions: deterministic, never the question itself, answered from
the same example in the same serving layout."""

from __future__ import annotations

import pytest

from bot.training import dataset
from bot.training.dataset import build_training_data
from bot.training.paraphrase import question_variants
from tests.conftest import MakeCore
from tests.test_training import FACTS, no_holdout, teach_all


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How do I reset my password?", "Can I reset my password?"),
        ("What is the refund window?", "Tell me the refund window."),
        ("Can I bring my bike?", "Am I allowed to bring my bike?"),
        ("Does Acme support IPv6?", "Quick check: does Acme support IPv6?"),
    ],
)
def test_yes_no_and_request_forms_are_made_by_rules(question: str, expected: str) -> None:
    variants = question_variants(question, 6, seed=7)
    assert expected in variants
    assert question not in variants and len(set(variants)) == len(variants)
    assert question_variants(question, 6, seed=7) == variants  # the same run, the same rows
    assert len(question_variants(question, 2, seed=7)) == 2 and question_variants(question, 0, seed=7) == []


def test_paraphrase_rows_answer_from_the_original_example_or_without_it_as_retrieval_misses_do(
    make_core: MakeCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each paraphrase row has its example first, except the MISSING_SHARE whose example is left
    out (near misses only), as when retrieval misses in use: the LoRA learns to answer those too."""
    monkeypatch.setattr(dataset, "MISSING_SHARE", 0.5)
    monkeypatch.setattr(dataset, "HISTORY_SHARE", 0.0)
    core = make_core()
    teach_all(core)
    no_holdout(core, replay_size=0, paraphrases=2)
    data = build_training_data(core.settings, core.examples, core.store)
    assert data.counts["paraphrases"] == 2 * len(FACTS) and len(data.train) == 3 * len(FACTS)
    without_own = 0
    for row in (r for r in data.train if r.source == "paraphrase"):
        asked = row.messages[-1]["content"]
        [(question, answer)] = [(q, a) for q, a in FACTS if row.completion == a]
        assert asked != question and row.context
        if (row.context[0].input, row.context[0].output) != (question, answer):
            assert answer not in [e.output for e in row.context]  # left out entirely, not moved down
            without_own += 1
    assert 0 < without_own < 2 * len(FACTS)
