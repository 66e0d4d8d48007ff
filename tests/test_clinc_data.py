"""The CLINC150 subset in bench/data is sound: every intent has one verified answer and one taught
phrasing, held-out questions are never taught or used, each fact is stated by its own answer and by
no other, and no out-of-scope query is also an in-scope phrasing. (bench/clinc_subset.py writes the
phrasings and out-of-scope files; these checks need only the committed files.)"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tests.conftest import REPO

BENCH_DATA = REPO / "bench" / "data"
ROLES = {"teach", "use", "heldout"}


def _rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (BENCH_DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def _same(text: str) -> str:
    """How two questions are compared: lowercase, runs of whitespace as one space."""
    return " ".join(text.lower().split())


ANSWERS = _rows("clinc_answers.jsonl")
PHRASINGS = _rows("clinc_phrasings.jsonl")
OOS = _rows("clinc_oos.jsonl")


def _strings(row: dict[str, Any]) -> bool:
    return all(isinstance(value, str) and value.strip() for value in row.values())


def test_files_parse_with_their_fields() -> None:
    assert ANSWERS and PHRASINGS and OOS
    assert all(set(row) == {"intent", "answer", "fact"} and _strings(row) for row in ANSWERS)
    assert all(set(row) == {"intent", "role", "question"} and _strings(row) for row in PHRASINGS)
    assert all(set(row) == {"question"} and _strings(row) for row in OOS)
    assert {row["role"] for row in PHRASINGS} == ROLES
    assert (BENCH_DATA / "CLINC150-NOTICE.md").is_file()  # CC-BY-3.0: the attribution ships with the data


def test_every_intent_has_one_answer_and_one_teach_line() -> None:
    answers = Counter(row["intent"] for row in ANSWERS)
    assert all(count == 1 for count in answers.values()), {i: n for i, n in answers.items() if n != 1}
    assert {row["intent"] for row in PHRASINGS} == set(answers)
    roles = Counter((row["intent"], row["role"]) for row in PHRASINGS)
    for intent in answers:
        assert roles[intent, "teach"] == 1, intent
        assert roles[intent, "use"] >= 1 and roles[intent, "heldout"] >= 1, intent


def test_heldout_questions_are_never_taught_or_used() -> None:
    seen = {_same(row["question"]) for row in PHRASINGS if row["role"] != "heldout"}
    repeated = [row["question"] for row in PHRASINGS if row["role"] == "heldout" and _same(row["question"]) in seen]
    assert not repeated, repeated
    questions = Counter(_same(row["question"]) for row in PHRASINGS)
    assert all(count == 1 for count in questions.values()), [q for q, n in questions.items() if n > 1]


def test_each_fact_is_stated_by_its_own_answer_and_no_other() -> None:
    facts = Counter(row["fact"].lower() for row in ANSWERS)
    assert all(count == 1 for count in facts.values()), [f for f, n in facts.items() if n > 1]
    missing = [row["intent"] for row in ANSWERS if row["fact"] not in row["answer"]]
    assert not missing, f"answers that do not contain their fact verbatim: {missing}"
    collisions = [
        (row["fact"], other["intent"])
        for row in ANSWERS
        for other in ANSWERS
        if other["intent"] != row["intent"] and row["fact"].lower() in other["answer"].lower()
    ]
    assert not collisions, f"facts found in another intent's answer: {collisions}"


def test_no_question_gives_a_fact_away() -> None:
    questions = [row["question"].lower() for row in PHRASINGS + OOS]
    given = [(row["fact"], q) for row in ANSWERS for q in questions if row["fact"].lower() in q]
    assert not given, given


def test_out_of_scope_queries_are_not_phrasings() -> None:
    in_scope = {_same(row["question"]) for row in PHRASINGS}
    overlap = [row["question"] for row in OOS if _same(row["question"]) in in_scope]
    assert not overlap, overlap
    assert len({_same(row["question"]) for row in OOS}) == len(OOS)
