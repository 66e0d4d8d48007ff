"""Answers in a conversation, as people chat: the conversation eval, where history and examples sit
in the prompt, follow-up retrieval, training rows with history, and a short real conversation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.evaluation import ALONE, EvalItem, evaluate, load_eval_file, shuffled
from bot.prompt import build_prompt
from bot.retrieval import retrieval_query
from bot.training import dataset
from bot.training.dataset import Pair, build_training_data, prompt_ids, render
from bot.types import ConversationKey, Example, Message, Turn, UserError
from tests.conftest import BOTH_ENGINES, MakeCore
from tests.fakes import FakeTokenizer

CONV = ConversationKey("console", "chat")
ITEMS = [
    EvalItem("opening hours?", ("9:00",)),
    EvalItem("and on Sundays?", ("closed",), followup=True),
    EvalItem("wifi password?", ("fjord",)),
    EvalItem("travel costs?", ("Mia",)),
]


def recorder(replies: dict[str, str]) -> tuple[list[tuple[str, str]], object]:
    asked: list[tuple[str, str]] = []

    def answer(conversation: str, question: str) -> str:
        asked.append((conversation, question))
        return replies[question]

    return asked, answer


def test_alone_gives_each_question_its_own_conversation_and_a_followup_its_openers() -> None:
    asked, answer = recorder({i.question: i.expect_any[0] for i in ITEMS})
    report = evaluate(answer, ITEMS, reset_every=ALONE)
    conversations = [c for c, _ in asked]
    assert conversations[0] == conversations[1]  # the follow-up rides with its opener
    assert len({conversations[0], conversations[2], conversations[3]}) == 3
    assert (report.hits, report.followup_hits, report.followup_total) == (4, 1, 1)


def test_one_conversation_counts_replies_that_repeat_the_one_before() -> None:
    replies = {"opening hours?": "Open 9:00 to 20:00.", "and on Sundays?": "open 9:00 to  20:00.",
               "wifi password?": "It is fjord-2291.", "travel costs?": "It is fjord-2291."}  # fmt: skip
    asked, answer = recorder(replies)
    report = evaluate(answer, ITEMS, reset_every=0)
    assert len({c for c, _ in asked}) == 1
    assert report.repeats == 2 and report.hits == 2
    assert [m["question"] for m in report.misses] == ["and on Sundays?", "travel costs?"]
    # A new conversation every 2 questions: the repeat across the reset is not one.
    asked, answer = recorder(
        {**replies, "and on Sundays?": "Closed.", "wifi password?": "closed.", "travel costs?": "Mia"}
    )
    assert evaluate(answer, ITEMS, reset_every=2).repeats == 0
    assert len({c for c, _ in asked}) == 2


def test_the_shuffled_order_is_seeded_and_keeps_followups_after_their_opener() -> None:
    items = [EvalItem(f"q{i}", ("x",), followup=i % 3 == 1) for i in range(12)]
    order = shuffled(items, 0)
    assert order == shuffled(items, 0) and order != items and sorted(order, key=items.index) == items
    for i, item in enumerate(order):
        if item.followup:
            assert items.index(order[i - 1]) == items.index(item) - 1


def test_an_eval_file_may_not_start_with_a_followup(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"question": "and then?", "expect_any": ["x"], "followup": True}) + "\n")
    with pytest.raises(UserError, match="follow-up of nothing"):
        load_eval_file(path)
    path.write_text(json.dumps({"question": "q", "expect_any": ["x"], "followup": "yes"}) + "\n")
    with pytest.raises(UserError, match='line 1: "followup" must be true or false'):
        load_eval_file(path)


def test_the_nearest_layout_puts_the_verified_answers_between_the_history_and_the_message() -> None:
    """The default model copies the nearest assistant turn: with the history nearest it repeated its
    previous reply (the travel question answered with the wifi password); the verified answers go there."""
    examples = [Example("e0", "Who approves travel expenses?", "Mia Lind in finance.")]
    history = [Turn("What is the wifi password?", "It is fjord-2291.")]
    messages = build_prompt(FakeTokenizer(), "sys", examples, history, "who signs off travel?", 10_000).messages
    assert [m["content"] for m in messages] == ["sys", "What is the wifi password?", "It is fjord-2291.",
                                                "Who approves travel expenses?", "Mia Lind in finance.",
                                                "who signs off travel?"]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "follows"),
    [("And on Sundays?", True), ("what about DVDs?", True), ("Is it free?", True), ("At what time?", True),
     ("What is her email address?", True), ("what did I just tell you ?", True), ("Tell me a joke", False),
     ("Where can I park my car?", False),
     ("How many books can I borrow at once?", False)],
)  # fmt: skip
def test_a_followup_is_looked_up_with_the_question_before_it(text: str, follows: bool) -> None:
    query = retrieval_query(text, "What are the opening hours?")
    assert query == ("What are the opening hours?\n" + text if follows else text)
    assert retrieval_query(text, None) == text


def test_a_followup_retrieves_the_example_its_opener_was_about(make_core: MakeCore) -> None:
    core = make_core()
    core.rules.teach("console", "local", "What are the opening hours?", "Mon-Fri 9:00-20:00; closed on Sundays.")
    core.rules.teach("console", "local", "When is story time?", "Story time is on Wednesdays at 10:30.")
    core.answer(Message(CONV, "local", "What are the opening hours?"))
    reply = core.answer(Message(CONV, "local", "And on Sundays?"))
    hours = core.examples.list()[0]
    assert reply.example_ids[:1] == (hours.id,)


def test_rows_in_a_conversation_are_the_prompts_serving_builds(
    make_core: MakeCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half the rows (HISTORY_SHARE) come after earlier exchanges about other facts; each row's
    prompt is what serving builds for that history, token for token."""
    facts = [(f"What is fact number {i}?", f"Fact {i} is {i * 7} units.") for i in range(8)]
    core = make_core()
    for question, answer in facts:
        core.rules.teach("console", "local", question, answer)
    core.answer(Message(CONV, "local", facts[1][0]))
    reply = core.answer(Message(CONV, "local", facts[0][0]))
    served = core.generation.engine.calls[-1]
    history = [Turn(t.user, t.assistant) for t in core.store.history(CONV, 3)[:-1]]
    context = core.examples.get(list(reply.example_ids))
    row = render(Pair(facts[0][0], facts[0][1], "import", "x"), context, core.settings, history=history)
    budget = core.settings.context_tokens - core.settings.max_new_tokens
    assert prompt_ids(FakeTokenizer(), row, core.settings, budget) == served

    data = build_training_data(core.settings, core.examples, core.store)
    with_history = [r for r in data.train if r.history]
    assert data.counts["in_conversation"] == len(with_history) > 0
    for row in with_history:
        assert 1 <= len(row.history) <= 3
        assert all(turn.assistant != row.completion for turn in row.history)  # other facts, never its own
        messages = [m["content"] for m in row.messages]
        assert messages.index(row.history[0].user) < messages.index(row.context[0].input) < len(messages) - 1
    again = build_training_data(core.settings, core.examples, core.store)
    assert again.fingerprint == data.fingerprint  # seeded
    monkeypatch.setattr(dataset, "HISTORY_SHARE", 0.0)
    assert not any(r.history for r in build_training_data(core.settings, core.examples, core.store).train)


TAUGHT = [
    ("What is the wifi password in the Oslo office?", "The Oslo office wifi password is fjord-2291.",
     "What's the wi-fi code at the Oslo office?", "fjord-2291"),
    ("Who approves travel expenses?", "Travel expenses are approved by Mia Lind in finance.",
     "who signs off on my travel costs?", "Mia Lind"),
    ("Where is the first-aid kit?", "The first-aid kit is in the kitchen, in the cupboard under the sink.",
     "I cut my finger, where do we keep the first aid box?", "kitchen"),
]  # fmt: skip


@pytest.mark.slow
@BOTH_ENGINES
def test_a_short_conversation_answers_each_taught_fact_and_then_a_general_question(make_real_core) -> None:
    """As issue 19 found it: after two taught answers the default model answered the travel question
    with the wifi password (its previous reply) and "Tell me a joke" with the question before it."""
    core = make_real_core()  # default settings: examples only, no LoRA
    for question, answer, _, _ in TAUGHT:
        assert core.command("console", "local", f"teach {question} => {answer}", CONV).ok
    replies = []
    for _, _, asked, expected in TAUGHT:
        reply = core.answer(Message(CONV, "local", asked)).text
        assert expected.lower() in reply.lower(), (asked, reply)
        replies.append(reply)
    general = core.answer(Message(CONV, "local", "What is the capital of France?")).text
    assert "paris" in general.lower(), general
    replies.append(general)
    assert len({" ".join(r.lower().split()) for r in replies}) == len(replies), replies  # none repeated
    assert len(core.store.history(CONV, 10)) == 4  # one conversation: the history rode along


def test_teach_takes_several_phrasings_and_retrieval_gives_their_answer_once(make_core: MakeCore) -> None:
    core = make_core()
    result = core.command(
        "console", "local", "teach Who approves travel expenses? | who signs off on my travel costs? => Mia Lind.", CONV
    )
    assert result.ok and "2 phrasings" in result.text, result.text
    assert sorted(e.input for e in core.examples.list()) == ["Who approves travel expenses?",
                                                             "who signs off on my travel costs?"]  # fmt: skip
    found = core.examples.retrieve("who signs off on my travel costs?", 3, -1.0, 0.99)
    assert [e.output for e in found] == ["Mia Lind."]  # one answer, by its nearest phrasing
    assert found[0].input == "who signs off on my travel costs?"
    assert not core.command("console", "local", "teach  |  => Mia Lind.", CONV).ok
    assert core.examples.count() == 2


def test_two_evaluations_through_one_answerer_never_share_a_conversation() -> None:
    """The gate asks the same questions of the serving LoRA, then of the candidate, through one
    answerer: sharing conversation ids gave the candidate the baseline's replies as history."""
    asked, answer = recorder({i.question: "x" for i in ITEMS})
    evaluate(answer, ITEMS)
    evaluate(answer, ITEMS)
    first, second = {c for c, _ in asked[:4]}, {c for c, _ in asked[4:]}
    assert first and second and not first & second
