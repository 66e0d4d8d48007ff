"""A 👎's reason: stored with the vote, counted in `feedback review`, exported beside the training
rows; an answer flagged unsafe is never an example and never a training row."""

from __future__ import annotations

import json
from pathlib import Path

from bot.training.export import export_feedback, votes_path
from bot.types import LOCAL_SCOPE, ConversationKey, Ignored, Message, Vote
from tests.conftest import MakeCore
from tests.test_training import FACTS, teach_all

CONV = ConversationKey("console", "test")


def test_a_downvote_reason_is_exported_and_unsafe_keeps_the_answer_out_of_every_row(
    make_core: MakeCore, tmp_path: Path
) -> None:
    core = make_core()
    teach_all(core)
    wrong = core.answer(Message(CONV, "u", "Tell me the refund window", scope=LOCAL_SCOPE))
    unsafe = core.answer(Message(CONV, "u", "How do I delete everything?", scope=LOCAL_SCOPE))
    core.handle(Vote("console", wrong.exchange_id, "v", -1, "e1", reason="outdated"))
    core.handle(Vote("console", unsafe.exchange_id, "v", -1, "e2"))
    assert core.handle(Vote("console", unsafe.exchange_id, "v", -1, "e3", reason="unsafe")).score == -1
    assert isinstance(core.handle(Vote("console", unsafe.exchange_id, "v", -1, "e4", reason="rude")), Ignored)
    path = tmp_path / "feedback.jsonl"
    counts = export_feedback(core.settings, core.examples, core.store, path)
    assert counts["kto"] == len(FACTS) + 1, "the outdated answer is a KTO row; the unsafe one is none"
    votes = {row["exchange_id"]: row for row in map(json.loads, votes_path(path).read_text().splitlines())}
    assert votes[wrong.exchange_id]["reasons"] == {"outdated": 1}
    assert votes[unsafe.exchange_id]["reasons"] == {"unsafe": 1} and votes[unsafe.exchange_id]["score"] == -1
    # A 👍 from someone else later does not make an unsafe answer an example.
    core.handle(Vote("console", unsafe.exchange_id, "w", 1, "e5"))
    core.handle(Vote("console", unsafe.exchange_id, "x", 1, "e6"))
    assert not [e for e in core.examples.list() if e.exchange_id == unsafe.exchange_id]
    review = core.command("console", "local", "feedback review", CONV).text
    assert "👎 reasons: outdated 1, unsafe 1 (unsafe answers never become examples or training rows)." in review
