"""Decoding rules against greedy loops: they look at the reply only, so the prompt stays copyable."""

from __future__ import annotations

import pytest

from bot.decoding import banned_next_tokens, clean_reply, reply_repetition_rules


def test_an_ngram_the_reply_already_has_cannot_be_completed_again() -> None:
    reply = [1, 2, 3, 9, 1, 2]
    assert banned_next_tokens(reply, 3) == {3}  # "1 2 3" is in the reply already
    assert banned_next_tokens(reply, 4) == set()  # "9 1 2 ?" is new
    assert banned_next_tokens(reply, 0) == set()


def test_the_prompt_is_never_counted() -> None:
    import torch

    prompt = [5, 6, 7, 5, 6]  # "5 6 7" repeats inside the prompt: copying it is allowed
    rules = reply_repetition_rules(prompt_tokens=len(prompt), ngram=3, penalty=1.0)
    scores = rules(torch.tensor([[*prompt, 5, 6]]), torch.zeros(1, 10))
    assert torch.isfinite(scores).all()  # the reply "5 6" has no earlier "5 6 ?" of its own
    scores = rules(torch.tensor([[*prompt, 5, 6, 7, 5, 6]]), torch.zeros(1, 10))
    assert scores[0, 7] == -float("inf") and torch.isfinite(scores[0, :7]).all()


def test_the_penalty_lowers_only_tokens_the_reply_used() -> None:
    import torch

    rules = reply_repetition_rules(prompt_tokens=2, ngram=0, penalty=2.0)
    scores = rules(torch.tensor([[3, 4, 4]]), torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0, -2.0]]))
    assert scores.tolist() == [[1.0, 1.0, 1.0, 1.0, 1.0, -2.0]]  # token 3 is the prompt's: untouched


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
