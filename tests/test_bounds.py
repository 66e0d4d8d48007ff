"""Growth without bound: event ids, pending corrections, the LoRA poll's reads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.config import load_settings
from bot.generation.worker import GenerationService
from bot.stores.feedback import FeedbackStore
from bot.stores.lora_registry import MANIFEST, LoraRegistry
from bot.stores.records import SEEN_EVENTS_KEEP_S
from bot.types import ConversationKey, Message, UserError
from tests.fakes import FakeEngine


def _events(store: FeedbackStore) -> set[str]:
    with store.engine.connect() as db:
        return {row[0] for row in db.execute(text("SELECT event_id FROM seen_events"))}


def _prune_plan(store: FeedbackStore) -> str:
    """How the database would run claim_event's prune."""
    prune = "DELETE FROM seen_events WHERE seen_at < 1"
    with store.engine.connect() as db:
        if store.dialect == "sqlite":
            return " ".join(str(row) for row in db.exec_driver_sql("EXPLAIN QUERY PLAN " + prune))
        # PostgreSQL scans a table this small whatever its indexes: ask whether an index can serve.
        db.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return " ".join(str(row) for row in db.exec_driver_sql("EXPLAIN " + prune))


def test_seen_events_older_than_a_day_are_pruned_cheaply(feedback_store: FeedbackStore) -> None:
    store = feedback_store
    assert store.claim_event("slack", "Ev-old") is True
    with store.engine.begin() as db:  # claimed more than a day ago
        db.execute(text("UPDATE seen_events SET seen_at = seen_at - :age"), {"age": SEEN_EVENTS_KEEP_S + 60})
    assert store.claim_event("slack", "Ev-new") is True
    assert _events(store) == {"Ev-old", "Ev-new"}  # pruned at most once a minute, not on every claim
    store.prune_interval_s = 0.0
    assert store.claim_event("discord", "Ev-3") is True
    assert _events(store) == {"Ev-new", "Ev-3"}
    assert store.claim_event("slack", "Ev-new") is False  # a retry within the window is still a repeat
    assert "seen_events_by_time" in _prune_plan(store)  # an index range delete, not a table scan


def test_pending_corrections_are_capped_per_user(make_core, database_url: str) -> None:
    assert load_settings(env={"BOT_MAX_PENDING_CORRECTIONS": "2"}).max_pending_corrections_per_user == 2
    admins = ("console:local", "slack:ADMIN")
    core = make_core(max_pending_corrections_per_user=2, admins=admins, database_url=database_url)
    message = Message(ConversationKey("slack", "C1"), "U1", "What is the VPN address?")
    exchange, scope = core.answer(message).exchange_id, message.scope
    core.rules.correct("slack", "U1", exchange, "vpn.example.com", scope)
    core.rules.correct("slack", "U1", exchange, "vpn2.example.com", scope)
    with pytest.raises(UserError, match="already have 2 corrections waiting"):
        core.rules.correct("slack", "U1", exchange, "vpn3.example.com", scope)
    assert len(core.store.corrections("pending")) == 2  # the refused one wrote nothing
    core.rules.correct("slack", "U2", exchange, "another user's is welcome", scope)
    core.rules.correct("slack", "ADMIN", exchange, "admins are not capped", scope)
    first = core.store.corrections("pending")[0].id
    assert core.command("slack", "ADMIN", f"feedback reject {first}", ConversationKey("slack", "C1")).ok
    core.rules.correct("slack", "U1", exchange, "room again after a review", scope)
    assert len([c for c in core.store.corrections("pending") if c.user_id == "U1"]) == 2


def test_the_lora_poll_reads_the_pointer_not_every_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = LoraRegistry(tmp_path / "loras", "base", "fp1")
    for _ in range(30):
        staging = registry.new_staging()
        (staging / "adapter_config.json").write_text("{}")
        registry.commit(staging, {})
    registry.promote("v0030", by="t")
    reads: list[str] = []
    read_text = Path.read_text

    def counting_read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == MANIFEST:
            reads.append(self.parent.name)
        return read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", counting_read_text)
    engine = FakeEngine(lora_source=registry.active_lora)
    service = GenerationService(engine, sync_interval_s=0.01)  # the worker's poll, sped up
    try:
        deadline = time.monotonic() + 5
        while engine.loras.version != "v0030" and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # about 30 more polls
        assert engine.loras.version == "v0030"
        assert reads == ["v0030"]  # validated once, then only the pointer file
        registry.promote("v0007", by="admin")
        while engine.loras.version != "v0007" and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert engine.loras.version == "v0007"
        assert reads.count("v0007") == 2 and set(reads) == {"v0030", "v0007"}  # promote's check + the poll's
    finally:
        service.close()


def test_the_adapters_in_memory_maps_keep_a_bounded_number_of_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Edit budgets per Discord channel route, open correction modals, refused workspaces: each kept to a
    bound, the least recently used forgotten first (issue 32)."""
    import asyncio

    from adapters import edit_budget
    from adapters.discord_bot import feedback

    budget = edit_budget.EditBudget(per_minute=60, burst=2)
    for channel in range(edit_budget.MAX_KEYS + 500):
        budget.take(f"route:{channel}")
    assert len(budget._buckets) == edit_budget.MAX_KEYS

    monkeypatch.setattr(feedback, "MAX_OPEN_MODALS", 3)
    monkeypatch.setattr(feedback, "_open_modals", feedback.deque())

    async def open_modals() -> list[bool]:
        modals = [feedback.CorrectionModal(f"x{n}", 100) for n in range(5)]
        return [modal.is_finished() for modal in modals]

    assert asyncio.run(open_modals()) == [True, True, False, False, False], "the two oldest were let go"
    assert len(feedback._open_modals) == 3


def test_workspaces_refused_are_remembered_to_a_bound(make_core) -> None:
    core = make_core(slack__allowed_teams=["T1"])
    for team in range(3000):
        assert not core.rules.invited("slack", f"T-stranger-{team}")
    assert len(core.rules._refused) == 1024
