"""Decoding rules against greedy loops: they look at the reply only, so the prompt stays copyable."""

from __future__ import annotations

import pytest

from bot.generation.decoding import ReplyRules, banned_next_tokens, clean_reply, favored_tokens
from bot.types import ConversationKey, Message
from tests.conftest import MakeCore, tuned
from tests.fakes import FakeEngine


def test_an_ngram_the_reply_already_has_cannot_be_completed_again() -> None:
    reply = [1, 2, 3, 9, 1, 2]
    assert banned_next_tokens(reply, 3) == {3}  # "1 2 3" is in the reply already
    assert banned_next_tokens(reply, 4) == set()  # "9 1 2 ?" is new
    assert banned_next_tokens(reply, 0) == set()


def _torch_rules(rules: ReplyRules):
    return rules.processor()


def _numpy_rules(rules: ReplyRules):
    """The same rules as llama.cpp's engine applies them: on each row, as numpy."""
    import numpy as np
    import torch

    def run(input_ids, scores):
        rows = scores.numpy().copy()
        for row, ids in zip(rows, input_ids.tolist(), strict=True):
            rules.apply(row, ids[rules.prompt_tokens :])
        return torch.from_numpy(np.asarray(rows))

    return run


BOTH = pytest.mark.parametrize("as_processor", [_torch_rules, _numpy_rules], ids=["torch", "numpy"])


@BOTH
def test_the_prompt_is_never_counted(as_processor) -> None:
    import torch

    prompt = [5, 6, 7, 5, 6]  # "5 6 7" repeats inside the prompt: copying it is allowed
    rules = as_processor(ReplyRules(prompt_tokens=len(prompt), ngram=3))
    scores = rules(torch.tensor([[*prompt, 5, 6]]), torch.zeros(1, 10))
    assert torch.isfinite(scores).all()  # the reply "5 6" has no earlier "5 6 ?" of its own
    scores = rules(torch.tensor([[*prompt, 5, 6, 7, 5, 6]]), torch.zeros(1, 10))
    assert scores[0, 7] == -float("inf") and torch.isfinite(scores[0, :7]).all()


@BOTH
def test_the_penalty_lowers_only_tokens_the_reply_used(as_processor) -> None:
    import torch

    rules = as_processor(ReplyRules(prompt_tokens=2, penalty=2.0))
    scores = rules(torch.tensor([[3, 4, 4, 5]]), torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0, -2.0]]))
    assert scores.tolist() == [[1.0, 1.0, 1.0, 1.0, 1.0, -4.0]]  # token 3 is the prompt's: untouched


@BOTH
def test_the_answer_bias_raises_only_the_favored_tokens(as_processor) -> None:
    import torch

    scores = as_processor(ReplyRules(prompt_tokens=2, favored=(1, 3), bias=2.5))(
        torch.tensor([[9, 9]] * 2), torch.zeros(2, 5)
    )
    assert scores.tolist() == [[0.0, 2.5, 0.0, 2.5, 0.0]] * 2


def test_no_rules_means_no_processing() -> None:
    from bot.config import Settings

    settings = Settings()
    plain = tuned(settings, answer_bias=0.0, no_repeat_ngram=0, repetition_penalty=1.0)
    assert ReplyRules.for_reply(plain, 10, [1, 2]) is None
    assert ReplyRules.for_reply(settings, 10, [2, 1, 2]).favored == (1, 2)
    assert ReplyRules.for_reply(tuned(settings, answer_bias=0.0), 10, [1]).favored == ()


def test_the_best_examples_answer_is_favored_only_when_the_bias_is_on(make_core: MakeCore) -> None:
    for bias in (0.0, 2.0):
        engine = FakeEngine()
        core = make_core(engine, tuning__answer_bias=bias)
        core.examples.add("How long do refunds take?", "Refunds take 14 days.", "good", "taught")
        core.examples.add("Where is the office?", "The office is in Leeds.", "good", "taught")
        core.answer(Message(ConversationKey("t", "c"), "u", "How long do refunds take to arrive?"))
        core.answer(Message(ConversationKey("t", "d"), "u", "Tell me a joke about penguins."))  # nothing retrieved
        wanted = favored_tokens(engine.tokenizer, "Refunds take 14 days.") if bias else []
        assert [list(h.favored) for h in engine.hints] == [wanted, []]


@pytest.mark.parametrize(("lora_for", "base_only"), [("examples", [False, True]), ("all", [False, False])])
def test_a_reply_without_a_verified_answer_is_written_by_the_base_model(
    make_core: MakeCore, tmp_path, lora_for: str, base_only: list[bool]
) -> None:
    engine = FakeEngine(lora_source=lambda: ("v0001", tmp_path))
    core = make_core(engine, tuning__lora_for=lora_for)
    core.generation.request_sync().result(timeout=10)
    core.examples.add("How long do refunds take?", "Refunds take 14 days.", "good", "taught")
    team = core.answer(Message(ConversationKey("t", "c"), "u", "How long do refunds take to arrive?"))
    general = core.answer(Message(ConversationKey("t", "d"), "u", "Tell me a joke about penguins."))
    assert [h.base_only for h in engine.hints] == base_only
    assert team.lora_version == "v0001"
    assert general.lora_version == (None if base_only[1] else "v0001")  # what wrote it, on the record
    assert core.store.exchange(general.exchange_id).lora_version == general.lora_version


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("A: The link expires after 30 minutes.", "The link expires after 30 minutes."),
        ("It expires after 30 minutes.\nQ: What else?", "It expires after 30 minutes."),
        ("  Plain answer.  ", "Plain answer."),
        ("Say A: and B: in a sentence.", "Say A: and B: in a sentence."),
    ],
)
def test_the_examples_layout_never_leaks_into_a_reply(raw: str, clean: str) -> None:
    assert clean_reply(raw) == clean


@pytest.mark.slow
def test_the_real_model_no_longer_loops_on_an_open_question(real_core) -> None:
    from bot.types import ConversationKey, Message

    reply = real_core.answer(Message(ConversationKey("t", "open"), "u", "Hi! What can you help me with?"))
    words = reply.text.split()
    eights = [tuple(words[i : i + 8]) for i in range(len(words) - 7)]
    assert len(eights) == len(set(eights)), reply.text  # greedy decoding used to repeat a phrase to the limit
