"""The core on fakes: answers, history, votes, corrections, commands, dedup."""

from __future__ import annotations

import threading
import time

import pytest

from bot.types import ConversationKey, Done, Message, Queued, Token, UserError
from tests.fakes import FakeEngine

CONV = ConversationKey("console", "local")


def ask(core, text: str, user: str = "local", conv: ConversationKey = CONV):
    return core.answer(Message(conv, user, text))


def test_answer_stores_exchange_with_provenance(make_core, database_url: str) -> None:
    core = make_core(database_url=database_url)
    core.examples.add("How do I reset my password?", "Use the reset link.", "good", "import")
    reply = ask(core, "How can I reset my password?")
    assert reply.text == "This is a test reply."
    stored = core.store.exchange(reply.exchange_id)
    assert stored is not None and stored.reply == reply.text
    assert len(reply.example_ids) == 1 and stored.example_ids == reply.example_ids
    assert any("Use the reset link." in m["content"] for m in stored.prompt)
    assert stored.lora_version is None


def test_stream_yields_tokens_then_done(make_core) -> None:
    core = make_core(FakeEngine("one two three"))
    events = list(core.answer_stream(Message(CONV, "u", "hi")))
    assert [e.text for e in events if isinstance(e, Token)] == ["one", " two", " three"]
    assert isinstance(events[-1], Done) and events[-1].reply.text == "one two three"


def test_a_stored_answer_is_shown_even_when_reading_ahead_fails_after_it(make_core, monkeypatch) -> None:
    core = make_core(FakeEngine("one two three"))

    def broken(*_args, **_kwargs):
        raise RuntimeError("the engine cannot hold prompts")

    monkeypatch.setattr(core.generation, "read_ahead", broken)
    events = list(core.answer_stream(Message(CONV, "u", "hi")))
    assert isinstance(events[-1], Done) and events[-1].reply.text == "one two three"
    assert core.store.exchange(events[-1].reply.exchange_id) is not None


def test_history_is_per_conversation_and_reset(make_core, database_url: str) -> None:
    engine = FakeEngine("ok")
    core = make_core(engine, database_url=database_url)
    ask(core, "first question")
    other = ConversationKey("console", "other")
    ask(core, "unrelated", conv=other)
    reply = ask(core, "second question")
    prompt = core.store.exchange(reply.exchange_id).prompt
    assert [m["content"] for m in prompt if m["role"] == "user"] == ["first question", "second question"]
    assert core.command("console", "local", "reset", CONV).ok
    prompt = core.store.exchange(ask(core, "third").exchange_id).prompt
    assert [m["content"] for m in prompt if m["role"] == "user"] == ["third"]


def test_oversized_and_empty_messages_are_refused_and_change_nothing(make_core) -> None:
    core = make_core(max_message_chars=50)
    with pytest.raises(UserError, match="limit is 50"):
        ask(core, "x" * 51)
    with pytest.raises(UserError, match="empty"):
        ask(core, "   ")
    assert core.store.count_exchanges() == 0


def test_votes_last_wins_and_threshold_makes_example(make_core, database_url: str) -> None:
    core = make_core(database_url=database_url)
    reply = ask(core, "What is the refund window?")
    assert core.examples.count() == 0
    result = core.rules.vote(reply.exchange_id, "console", "a", 1)
    assert result.score == 1 and result.is_example and core.examples.count() == 1
    result = core.rules.vote(reply.exchange_id, "console", "a", -1)  # the same user changes their mind
    assert result.score == -1 and not result.is_example and core.examples.count() == 0
    core.rules.vote(reply.exchange_id, "console", "a", 1)
    result = core.rules.vote(reply.exchange_id, "console", "a", 0)  # retraction
    assert result.score == 0 and core.examples.count() == 0


def test_react_maps_emoji_and_removal_retracts_only_the_same_vote(make_core, database_url: str) -> None:
    core = make_core(database_url=database_url)
    reply = ask(core, "hello there")
    core.link_message(reply.exchange_id, "slack", "C1:1.0")
    assert core.rules.react("slack", "C1:1.0", "U1", "+1::skin-tone-2", added=True).score == 1
    assert core.rules.react("slack", "C1:1.0", "U1", "-1", added=True).score == -1
    assert core.rules.react("slack", "C1:1.0", "U1", "+1", added=False).score == -1  # 👍 was not theirs
    assert core.rules.react("slack", "C1:1.0", "U1", "-1", added=False).score == 0
    assert core.rules.react("slack", "C1:1.0", "U1", "tada", added=True) is None
    assert core.rules.react("slack", "C9:9.9", "U1", "+1", added=True) is None


def test_correction_from_user_waits_for_admin_review(make_core, database_url: str) -> None:
    core = make_core(admins=("console:admin",), database_url=database_url)
    reply = ask(core, "Which regions do you run in?")
    result = core.rules.correct("console", "someone", reply.exchange_id, "Frankfurt and Oregon",
                                 core.store.exchange(reply.exchange_id).scope)  # fmt: skip
    assert "waiting" in result.text and core.examples.count() == 0
    pending = core.store.corrections("pending")
    assert len(pending) == 1 and pending[0].answer == "Frankfurt and Oregon"
    refused = core.command("console", "someone", f"feedback accept {pending[0].id}", CONV)
    assert not refused.ok and "admins only" in refused.text
    accepted = core.command("console", "admin", f"feedback accept {pending[0].id}", CONV)
    assert accepted.ok and core.examples.count() == 1
    again = core.command("console", "admin", f"feedback accept {pending[0].id}", CONV)
    assert not again.ok


def test_teach_is_admin_only_and_retrieved_next_time(make_core) -> None:
    core = make_core()
    refused = core.command("console", "stranger", "teach Q => A", CONV)
    assert not refused.ok and core.examples.count() == 0
    bad = core.command("console", "local", "teach no arrow here", CONV)
    assert not bad.ok and "QUESTION => ANSWER" in bad.text
    ok = core.command("console", "local", "teach What is the office wifi password? => It is pelican42", CONV)
    assert ok.ok
    reply = ask(core, "what's the wifi password in the office?")
    assert any("pelican42" in m["content"] for m in core.store.exchange(reply.exchange_id).prompt)


def test_unknown_command_is_a_clear_error(make_core) -> None:
    result = make_core().command("console", "local", "frobnicate now", CONV)
    assert not result.ok and "unknown command" in result.text and "help" in result.text


def test_claim_event_dedups_durably(make_core, database_url: str) -> None:
    core = make_core(database_url=database_url)
    assert core.store.claim_event("slack", "Ev1") is True
    assert core.store.claim_event("slack", "Ev1") is False
    assert core.store.claim_event("discord", "Ev1") is True


def test_concurrent_requests_are_queued_and_see_their_position(make_core, database_url: str) -> None:
    core = make_core(FakeEngine("a b c d e f", delay_s=0.05), database_url=database_url)
    results: dict[str, list] = {}

    def run(user: str) -> None:
        results[user] = list(core.answer_stream(Message(CONV, user, f"question from {user}")))

    threads = [threading.Thread(target=run, args=(f"u{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(isinstance(events[-1], Done) and events[-1].reply.text == "a b c d e f" for events in results.values())
    assert any(any(isinstance(e, Queued) for e in events) for events in results.values())
    assert core.store.count_exchanges() == 3


def wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_user_over_the_waiting_cap_is_refused_before_anything_happens(make_core) -> None:
    gate = threading.Event()  # holds generation: the first question runs, the second waits
    engine = FakeEngine("ok", gate=gate)
    core = make_core(engine, max_waiting_per_user=2)
    retrieved: list[str] = []
    real_retrieve = core.examples.retrieve
    core.examples.retrieve = lambda text, *a, **kw: retrieved.append(text) or real_retrieve(text, *a, **kw)
    threads = [threading.Thread(target=ask, args=(core, f"question {i}", "flood")) for i in range(2)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(engine.calls) == 1 and core.generation.queued() == 1)

        with pytest.raises(UserError, match="You already have 2 questions waiting; I'll get to them"):
            next(core.answer_stream(Message(CONV, "flood", "one more")))  # without the cap: Queued
        assert "one more" not in retrieved, "refused before retrieval"
        assert core.generation.queued() == 1, "a user over the cap never enters the generation queue"

        other = threading.Thread(target=ask, args=(core, "my turn", "other"))  # the cap is per user
        threads.append(other)
        other.start()
        wait_for(lambda: core.generation.queued() == 2)
    finally:
        gate.set()
        for t in threads:
            t.join(timeout=30)
    assert sorted(e.user_text for e in core.store.exchanges()) == ["my turn", "question 0", "question 1"]
    assert ask(core, "one more", user="flood").text == "ok", "answered requests free the user's slots"
