"""A flood is refused in `Core.handle`, at once: one user's 40 questions become 3 answers in flight
and 37 refusals, nothing of them waits in an adapter's pool or the model's queue, and another user
is answered next. In all, no more answers are admitted than an adapter has threads."""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bot.types import Answering, CommandResult, ConversationKey, Done, Ignored, Incoming, Token, Vote
from tests.fakes import FakeEngine


def stored_key(exchange) -> ConversationKey:
    return ConversationKey.parse(exchange.conversation)


def question(user: str, n: int) -> Incoming:
    conversation = ConversationKey("slack", f"D{user}")
    return Incoming("slack", conversation, user, f"question {n} from {user}", is_dm=True, event_id=f"{user}-{n}")


def finish(answering: Answering, done_order: list[str], lock: threading.Lock) -> None:
    for event in answering.events:
        if isinstance(event, Done):
            with lock:
                done_order.append(answering.message.user_id)


def test_forty_from_one_user_are_refused_at_once_and_another_user_is_answered_next(make_core) -> None:
    core = make_core(FakeEngine("one two three four", delay_s=0.05), max_waiting_per_user=3, answer_threads=8)
    pool = ThreadPoolExecutor(8)  # as an adapter's answer pool
    done_order: list[str] = []
    lock = threading.Lock()
    outcomes = [core.handle(question("flood", n)) for n in range(40)]
    admitted = [o for o in outcomes if isinstance(o, Answering)]
    refused = [o for o in outcomes if isinstance(o, CommandResult)]
    assert len(admitted) == 3 and len(refused) == 37, "decided in handle(), before any pool thread runs"
    assert all(not r.ok and "You already have 3 questions waiting" in r.text for r in refused)
    futures = [pool.submit(finish, a, done_order, lock) for a in admitted]
    started = time.monotonic()
    other = core.handle(question("other", 0))
    assert isinstance(other, Answering)
    futures.append(pool.submit(finish, other, done_order, lock))
    for future in futures:
        future.result(timeout=30)
    print(f"\nthe other user's answer took {time.monotonic() - started:.2f} s beside the flood")
    pool.shutdown()
    # The model's fair queue takes turns: the other user waits for the flood's answer in progress
    # and at most one more, never for all of the flood's.
    assert done_order.index("other") <= 2 and done_order[-1] == "flood", done_order
    assert "question 0 from other" in {e.user_text for e in core.store.exchanges()}
    assert core.store.count_exchanges() == 4, "the refused questions stored nothing"


def test_no_more_answers_are_admitted_than_an_adapter_has_threads(make_core) -> None:
    gate = threading.Event()
    core = make_core(FakeEngine("ok", gate=gate), answer_threads=4, workspace_share=1.0)  # DMs: one group
    held = [core.handle(question(f"user{n}", 0)) for n in range(4)]
    assert all(isinstance(o, Answering) for o in held)
    busy = core.handle(question("user9", 0))
    assert isinstance(busy, CommandResult) and not busy.ok
    assert busy.text == "I'm answering 4 questions right now; please ask again in a minute."
    gate.set()
    for answering in held:
        assert isinstance(answering, Answering)
        assert isinstance(list(answering.events)[-1], Done)
    assert isinstance(core.handle(question("user9", 1)), Answering), "finished answers free their slots"


def test_an_answer_its_adapter_drops_unread_frees_its_slot(make_core) -> None:
    core = make_core(FakeEngine("ok"), max_waiting_per_user=1)
    dropped = core.handle(question("u", 0))
    assert isinstance(dropped, Answering)
    assert isinstance(core.handle(question("u", 1)), CommandResult), "the slot is held while the answer is owed"
    del dropped
    gc.collect()
    assert isinstance(core.handle(question("u", 2)), Answering)
    assert core.store.count_exchanges() == 0, "the dropped answer was never generated"


def test_forty_abandoned_questions_are_taken_out_of_the_queue_not_written(make_core) -> None:
    """A channel where the bot may read but not post: every stream is dropped after its first event.
    Each one leaves the model's queue with its slot, so the limits still limit (issue 32)."""
    gate = threading.Event()
    engine = FakeEngine("ok", gate=gate)
    core = make_core(engine, max_waiting_per_user=1, answer_threads=2, workspace_share=1.0)
    blocker = core.handle(question("blocker", 0))  # holds the model until the gate opens
    assert isinstance(blocker, Answering)
    pool = ThreadPoolExecutor(1)
    blocked = pool.submit(lambda: list(blocker.events))
    while not engine.calls:
        time.sleep(0.01)
    for n in range(40):
        answering = core.handle(question(f"mute{n}", 0))
        assert isinstance(answering, Answering), answering
        assert [type(next(answering.events)).__name__ for _ in range(2)] == ["Looked", "Queued"]
        answering.events.close()  # posting failed: the adapter drops the stream
    assert core.generation.queued() == 0, "the dropped questions left the queue"
    gate.set()
    assert isinstance(blocked.result(timeout=30)[-1], Done)
    pool.shutdown()
    assert len(engine.calls) == 1 and core.store.count_exchanges() == 1, "only the answer someone read was written"


def test_a_dropped_reply_stops_being_written_and_frees_its_slot_once_the_worker_lets_go(make_core) -> None:
    engine = FakeEngine(" ".join(f"w{n}" for n in range(400)), delay_s=0.01)
    core = make_core(engine, max_waiting_per_user=1, answer_threads=1)
    written: list[str] = []
    original = engine.generate

    def counting(input_ids, max_new_tokens, on_text, hints):
        return original(input_ids, max_new_tokens, lambda text: (written.append(text), on_text(text)), hints)

    engine.generate = counting
    answering = core.handle(question("u", 0))
    assert isinstance(answering, Answering)
    assert [type(next(answering.events)).__name__ for _ in range(2)] == ["Looked", "Token"]
    answering.events.close()  # returns once the worker has let the reply go
    count = len(written)
    time.sleep(0.5)  # 50 more pieces, were it still being written
    assert len(written) == count < 20, f"{len(written)} pieces written, {count} when the stream was dropped"
    assert core.store.count_exchanges() == 0
    again = core.handle(question("u", 1))  # the user's and the bot's only slot are free again
    assert isinstance(again, Answering) and isinstance(list(again.events)[-1], Done)


def test_a_stopped_reply_ends_at_its_next_token_and_is_stored_as_stopped(make_core) -> None:
    engine = FakeEngine(" ".join(f"w{n}" for n in range(400)), delay_s=0.01)
    core = make_core(engine, max_waiting_per_user=1, answer_threads=1)
    answering = core.handle(question("u", 0))
    assert isinstance(answering, Answering)
    events = iter(answering.events)
    while not isinstance(next(events), Token):
        pass
    answering.stop.set()  # from any thread: a platform's Stop button
    started = time.monotonic()
    (done,) = [e for e in events if isinstance(e, Done)]
    assert time.monotonic() - started < 1.0 and done.reply.stopped
    assert 0 < len(done.reply.text.split()) < 50, "what was written until then"
    stored = core.store.exchange(done.reply.exchange_id)
    assert stored is not None and stored.stopped and stored.reply == done.reply.text
    assert core.store.history(stored_key(stored), 5) == [], "a stopped reply is no turn of the conversation"
    assert isinstance(core.rules.handle(Vote(stored.platform, stored.id, "v", 1, "e")), Ignored), "it takes no votes"


def test_one_server_flooding_with_many_accounts_leaves_room_for_another_workspace(make_core) -> None:
    """11 accounts in one Discord server ask at once; a Slack user of another workspace asks after
    them: they are admitted (the server holds its share of the slots, no more) and answered next
    (the queue takes turns by workspace before user)."""
    gate = threading.Event()
    engine = FakeEngine("ok", gate=gate)
    core = make_core(engine, max_waiting_per_user=1, answer_threads=8)

    def asked(platform: str, workspace: str, user: str) -> Incoming:
        conversation = ConversationKey(platform, f"C-{workspace}", user)
        return Incoming(platform, conversation, user, f"question from {user}", workspace=workspace,
                        mentions_bot=True, event_id=f"{workspace}-{user}")  # fmt: skip

    crowd = [core.handle(asked("discord", "G-flood", f"crowd{n}")) for n in range(11)]
    admitted = [o for o in crowd if isinstance(o, Answering)]
    refused = [o for o in crowd if isinstance(o, CommandResult)]
    assert len(admitted) == 6 and len(refused) == 5, "8 slots, a server's share is 75% of them"
    assert "from this workspace right now, its share" in refused[0].text
    other = core.handle(asked("slack", "T-other", "alice"))
    assert isinstance(other, Answering)
    pool = ThreadPoolExecutor(8)
    futures = [pool.submit(lambda a: list(a.events), a) for a in admitted]
    while core.generation.queued() < 5:  # one of the crowd's being written, the others waiting
        time.sleep(0.01)
    futures.append(pool.submit(lambda: list(other.events)))
    while core.generation.queued() < 6:
        time.sleep(0.01)
    gate.set()
    for future in futures:
        assert isinstance(future.result(timeout=30)[-1], Done)
    pool.shutdown()
    alice = engine.tokenizer("alice")["input_ids"][0]
    served = ["alice" if alice in call else "crowd" for call in engine.calls]
    # After the crowd's answer in progress and the one whose turn had come, not after all five waiting.
    assert served.index("alice") == 2, served
