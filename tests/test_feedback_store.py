"""The feedback store on both engines (SQLite and a real PostgreSQL): what goes in comes back,
votes stay one per user, and a platform retry is claimed once however many processes race for it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from bot.stores.feedback import FeedbackStore
from bot.stores.records import example_sync, votes
from bot.types import ConversationKey, ReplyStats, Turn

REPO = Path(__file__).resolve().parent.parent
CONV = ConversationKey("slack", "C1", "T1")
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Où est le café ☕?"}]


def add(store: FeedbackStore, text: str = "Où est le café ☕?", conv: ConversationKey = CONV) -> str:
    args = (PROMPT, ("ex1", "ex2"), "v0003", ReplyStats(1.25, None, 17, 4), "slack:T1")
    return store.add_exchange(conv, "U1", text, "Second floor.", *args)


def target(store: FeedbackStore) -> str:
    """The store's database as a URL another store or process can open (`sqlite:///…` or `postgresql://…`)."""
    return store.url.render_as_string(hide_password=False)


def second_store(store: FeedbackStore) -> FeedbackStore:
    """Another store on the same database: its own connections, as another replica's."""
    return FeedbackStore(target(store))


def test_exchanges_and_corrections_round_trip(feedback_store: FeedbackStore) -> None:
    exchange_id = add(feedback_store)
    other = second_store(feedback_store)  # committed before add_exchange returned
    try:
        stored = other.exchange(exchange_id)
        assert stored is not None
        assert (stored.user_text, stored.reply, stored.prompt) == ("Où est le café ☕?", "Second floor.", PROMPT)
        assert (stored.example_ids, stored.lora_version, stored.scope) == (("ex1", "ex2"), "v0003", "slack:T1")
        assert stored.stats == ReplyStats(latency_s=1.25, first_token_s=None, prompt_tokens=17, completion_tokens=4)
        assert (stored.platform, stored.conversation, stored.user_id) == ("slack", "slack:C1:T1", "U1")
        assert other.exchange(exchange_id) == feedback_store.exchange(exchange_id)  # the time to the last bit
        assert other.exchange("nope") is None

        pending = feedback_store.add_correction(exchange_id, "slack", "U2", "Where is the café?", "Third floor.", None)
        taught = feedback_store.add_correction(None, "console", "local", "Wifi?", "guest-net", "console:local")
        assert [c.id for c in other.corrections()] == [pending.id, taught.id]
        assert other.corrections("pending") == [pending] and other.correction(taught.id) == taught
        assert other.count_pending_corrections("slack", "U2") == 1
        assert other.count_pending_corrections("slack", "U1") == 0
        reviewed = other.review_correction(pending.id, accept=False, reviewer="slack:ADMIN")
        assert reviewed is not None and (reviewed.status, reviewed.reviewed_by) == ("rejected", "slack:ADMIN")
        assert feedback_store.review_correction(pending.id, accept=True, reviewer="slack:ADMIN") is None  # done once
        assert feedback_store.count_pending_corrections("slack", "U2") == 0
        assert [e.id for e in feedback_store.exchanges()] == [exchange_id] and feedback_store.count_exchanges() == 1
    finally:
        other.close()


def test_a_correction_id_already_taken_is_drawn_again(
    feedback_store: FeedbackStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    drawn = iter(["a" * 32, "a" * 32, "b" * 32])  # the second correction first draws the first's id
    monkeypatch.setattr("bot.stores.feedback.uuid.uuid4", lambda: uuid.UUID(next(drawn)))
    first = feedback_store.add_correction(None, "console", "local", "Wifi?", "guest-net", "console:local")
    second = feedback_store.add_correction(None, "console", "local", "Door code?", "4711", "console:local")
    assert (first.id, second.id) == ("aaaaaaaa", "bbbbbbbb")
    assert [c.answer for c in feedback_store.corrections()] == ["guest-net", "4711"]


def test_one_vote_per_user_and_the_last_one_wins(feedback_store: FeedbackStore) -> None:
    store = feedback_store
    exchange_id = add(store)
    assert store.set_vote(exchange_id, "slack", "U2", 1) == 1
    assert store.set_vote(exchange_id, "slack", "U2", 1) == 1  # a repeat is not a second vote
    assert store.set_vote(exchange_id, "slack", "U2", -1) == -1  # changed their mind
    assert store.set_vote(exchange_id, "discord", "U2", 1) == 0  # another platform's U2 is another user
    assert store.set_vote(exchange_id, "slack", "U1", 1) == 1  # the asker
    assert store.user_vote(exchange_id, "slack", "U2") == -1 and store.user_vote(exchange_id, "slack", "U9") == 0
    assert store.promotion_score(exchange_id, "slack", "U1", asker_counts=False) == 0  # their own 👍 does not count
    assert store.promotion_score(exchange_id, "slack", "U1", asker_counts=True) == 1
    assert store.set_vote(exchange_id, "slack", "U2", 0) == 2  # retracted
    assert store.score(exchange_id) == 2 and [s for _, s in store.scored_exchanges()] == [2]
    with store.engine.connect() as db:
        assert db.execute(select(func.count()).select_from(votes)).scalar() == 2
    with pytest.raises(ValueError, match="a vote is -1, 0 or \\+1"):
        store.set_vote(exchange_id, "slack", "U2", 2)
    with pytest.raises(IntegrityError), store.engine.begin() as db:  # the database itself keeps one per user
        row = {"exchange_id": exchange_id, "platform": "slack", "user_id": "U1", "value": 1, "updated_at": 0.0}
        db.execute(votes.insert().values(**row))


def test_a_failed_write_leaves_nothing_behind(feedback_store: FeedbackStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vote that fails after its row and its example-sync row were written (here: while summing
    the score) leaves neither: the three statements are one transaction."""
    exchange_id = add(feedback_store)

    def broken_sum(*_: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("bot.stores.feedback._sum_of", broken_sum)
    with pytest.raises(RuntimeError):
        feedback_store.set_vote(exchange_id, "slack", "U2", 1)
    monkeypatch.undo()
    assert feedback_store.pending_example_syncs() == [] and feedback_store.user_vote(exchange_id, "slack", "U2") == 0
    with pytest.raises(IntegrityError):  # the database checks the reference itself, on both engines
        feedback_store.set_vote("no-such-exchange", "slack", "U2", 1)
    assert feedback_store.score("no-such-exchange") == 0


def test_history_since_the_last_reset(feedback_store: FeedbackStore) -> None:
    store = feedback_store
    other = ConversationKey("slack", "C1", "T2")
    assert store.history(CONV, 5) == [] and not store.has_history(CONV) and store.latest_exchange(CONV) is None
    ids = [add(store, f"question {i}") for i in range(4)]
    add(store, "elsewhere", conv=other)
    assert store.history(CONV, 2) == [Turn("question 2", "Second floor."), Turn("question 3", "Second floor.")]
    assert len(store.history(CONV, 10)) == 4 and store.history(CONV, 0) == []
    store.reset(CONV)
    store.reset(CONV)  # twice: the latest reset counts
    assert store.history(CONV, 5) == [] and store.latest_exchange(CONV) == ids[-1]  # replies stay votable
    assert store.has_history(CONV) and len(store.history(other, 5)) == 1
    add(store, "after the reset")
    assert store.history(CONV, 5) == [Turn("after the reset", "Second floor.")]


def test_message_links_point_at_the_latest_exchange(feedback_store: FeedbackStore) -> None:
    first, second = add(feedback_store), add(feedback_store)
    feedback_store.link_message(first, "slack", "C1:1.0")
    assert feedback_store.exchange_for_message("slack", "C1:1.0") == first
    feedback_store.link_message(second, "slack", "C1:1.0")  # a message edited to hold another reply
    assert feedback_store.exchange_for_message("slack", "C1:1.0") == second
    assert feedback_store.exchange_for_message("discord", "C1:1.0") is None


def test_the_example_sync_queue_survives_a_restart(feedback_store: FeedbackStore) -> None:
    store = feedback_store
    exchange_id = add(store)
    store.set_vote(exchange_id, "slack", "U2", 1)
    store.set_vote(exchange_id, "slack", "U3", 1)  # queued once, however many votes
    pending = store.add_correction(exchange_id, "slack", "U2", "Q?", "A.", None)  # owes nothing yet
    admin = store.add_correction(None, "slack", "ADMIN", "Q2?", "A2.", "slack:ADMIN")
    assert store.pending_example_syncs() == [("exchange", exchange_id), ("correction", admin.id)]
    store.review_correction(pending.id, accept=True, reviewer="slack:ADMIN")
    store.close()
    restarted = second_store(store)
    try:
        owed = [("exchange", exchange_id), ("correction", admin.id), ("correction", pending.id)]
        assert restarted.pending_example_syncs() == owed
        restarted.example_synced("correction", admin.id)
        restarted.example_synced("correction", "never-queued")  # harmless
        assert restarted.pending_example_syncs() == [owed[0], owed[2]]
        with pytest.raises(IntegrityError), restarted.engine.begin() as db:
            db.execute(example_sync.insert().values(kind="vote", ref="x", queued_at=0.0))  # kinds are checked
    finally:
        restarted.close()


def test_claim_event_is_atomic_across_connections(feedback_store: FeedbackStore) -> None:
    """Two stores (two replicas' connection pools) claim the same event ids at the same moment."""
    ids = [f"Ev{i}" for i in range(150)]
    stores = [feedback_store, second_store(feedback_store)]
    won: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def claim(index: int) -> None:
        start.wait()
        won[index] = [event for event in ids if stores[index].claim_event("slack", event)]

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stores[1].close()
    assert sorted(won[0] + won[1]) == sorted(ids)  # every event claimed exactly once
    assert not any(feedback_store.claim_event("slack", event) for event in ids)


CLAIMER = """
import sys
from bot.stores.feedback import FeedbackStore

store = FeedbackStore(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # every process opened its store: now race
print(",".join(str(i) for i in range(int(sys.argv[2])) if store.claim_event("slack", f"Ev{i}")), flush=True)
"""


def test_claim_event_is_atomic_across_processes(feedback_store: FeedbackStore) -> None:
    count = 200
    command = [sys.executable, "-c", CLAIMER, target(feedback_store), str(count)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    processes = [subprocess.Popen(command, cwd=REPO, text=True, **pipes) for _ in range(3)]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120)[0].strip() for process in processes]
    finally:
        for process in processes:
            process.kill()
    won = [int(i) for output in outputs for i in output.split(",") if i]
    assert sorted(won) == list(range(count)), "each event claimed by exactly one process"
    assert sum(1 for output in outputs if output) >= 1


def test_a_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a postgresql:// URL or a SQLite path, not mysql"):
        FeedbackStore("mysql://root@localhost/bot")
    store = FeedbackStore(f"sqlite:///{tmp_path}/sub/feedback.sqlite3")  # a SQLite URL is a path too
    try:
        assert store.dialect == "sqlite" and (tmp_path / "sub" / "feedback.sqlite3").exists()
        with store.engine.connect() as db:
            assert db.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        store.close()


def test_a_nul_in_a_message_is_stored_alike_on_both(feedback_store) -> None:
    """PostgreSQL refuses NUL in text; a message with one must not lose its exchange there."""
    store = feedback_store
    exchange_id = store.add_exchange(ConversationKey("console", "local"), "u", "a\x00b", "ok", [], (), None,
                                     ReplyStats(0.1, None, 1, 1), "")  # fmt: skip
    assert store.exchange(exchange_id).user_text == "a\ufffdb"
    correction = store.add_correction(exchange_id, "console", "u", "q\x00", "a\x00", accepted_by=None)
    assert (store.correction(correction.id).question, store.correction(correction.id).answer) == ("q\ufffd", "a\ufffd")
