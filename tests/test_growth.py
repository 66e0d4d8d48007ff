"""Bounds on growth (issue 22): corrections capped in length, the review a page at a time, old
prompts cleared, old LoRA candidates and training logs pruned, and a worker-mode retrain that
gives up on a trainer that never answers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import update

from bot import commands
from bot.config import load_settings
from bot.feedback_rules import REVIEW_CHARS, REVIEW_PAGE
from bot.status import status_data, status_text
from bot.stores.feedback import FeedbackStore
from bot.stores.lora_registry import LoraRegistry
from bot.stores.records import exchanges
from bot.training import remote
from bot.training.runner import TrainingRunner, rotate
from bot.types import CommandResult, ConversationKey, Message, ReplyStats, UserError
from bot.wiring import keep_pruning
from tests import conftest
from tests.conftest import MakeCore
from tests.test_processes import stand_in_runner

CONV = ConversationKey("slack", "C1")
DAY = 86400.0


def _age(store: FeedbackStore, exchange_id: str, days: float) -> None:
    with store._tx() as db:
        db.execute(update(exchanges).where(exchanges.c.id == exchange_id).values(created_at=time.time() - days * DAY))


def _commit(registry: LoraRegistry, count: int) -> None:
    for _ in range(count):
        staging = registry.new_staging()
        (staging / "adapter_config.json").write_text("{}")
        registry.commit(staging, {})


# corrections capped in length ------------------------------------------------------------------


def test_a_correction_or_taught_answer_over_the_cap_is_refused_and_nothing_is_stored(make_core: MakeCore) -> None:
    assert load_settings(env={"BOT_MAX_CORRECTION_CHARS": "9"}).max_correction_chars == 9
    core = make_core(max_correction_chars=50, admins=("console:local",))
    message = Message(CONV, "U1", "What is the VPN address?")
    exchange = core.answer(message).exchange_id
    with pytest.raises(UserError, match="limited to 50"):
        core.rules.correct("slack", "U1", exchange, "x" * 51, message.scope)
    taught = core.command("console", "local", f"teach Wifi? | Guest wifi? => {'y' * 51}", CONV)
    assert not taught.ok and "limited to 50" in taught.text
    assert core.store.corrections() == [] and core.examples.count() == 0  # nothing stored, no example
    core.rules.correct("slack", "U1", exchange, "x" * 50, message.scope)  # at the cap: fine
    assert [len(c.answer) for c in core.store.corrections()] == [50]


# feedback review, a page at a time ---------------------------------------------------------------


def test_review_shows_a_page_of_shortened_corrections_and_how_to_get_the_next(make_core: MakeCore) -> None:
    core = make_core()
    long_answer = "A" * 1000
    for number in range(REVIEW_PAGE + 3):  # each from its own user: the per-user cap stays out of the way
        core.store.add_correction(None, "slack", f"U{number}", f"question {number}?", f"{long_answer}{number}", None)

    def review(line: str) -> CommandResult:
        return core.command("console", "local", line, CONV)

    first = review("feedback review")
    assert first.ok and first.text.count("  by slack:") == REVIEW_PAGE
    assert "question 0?" in first.text and f"question {REVIEW_PAGE}?" not in first.text  # oldest first
    assert long_answer not in first.text and "A" * (REVIEW_CHARS - 1) + "…" in first.text
    assert len(first.text) < REVIEW_PAGE * (2 * REVIEW_CHARS + 60)  # one chat message, however long they are
    assert "Page 1 of 2; `feedback review 2` for the next." in first.text

    second = review("feedback review 2")
    assert second.ok and second.text.count("  by slack:") == 3 and "Page 2 of 2." in second.text
    assert f"question {REVIEW_PAGE + 2}?" in second.text and "for the next" not in second.text
    for past in ("feedback review 3", "feedback review 0"):
        refused = review(past)
        assert not refused.ok and "no page" in refused.text and "2 page(s)" in refused.text
    assert not review("feedback review two").ok

    # Discord's typed options (and the CLI) send a left-out page as None: the first page.
    call = commands.named("feedback review", {"page": None})
    assert call.args == {} and call.command.handler(core, _admin(), **call.args).text == first.text
    assert commands.named("feedback review", {"page": 2}).args == {"page": 2}


def _admin() -> commands.Caller:
    return commands.Caller("console", "local", CONV, is_admin=True)


def test_a_short_review_has_no_page_line(make_core: MakeCore) -> None:
    core = make_core()
    core.store.add_correction(None, "slack", "U1", "Wifi?", "guest-net", None)
    text = core.rules.review_text()
    assert "guest-net" in text and "Page" not in text


# old prompts cleared ----------------------------------------------------------------------------


def test_prompts_older_than_the_setting_are_cleared_and_the_rows_kept(feedback_store: FeedbackStore) -> None:
    store = feedback_store
    prompt = [{"role": "user", "content": "Where is the café?"}]
    served = (prompt, ("ex1",), "v0003", ReplyStats(1.0, None, 10, 3), "slack:C1")
    old, recent = (store.add_exchange(CONV, "U1", "Where is the café?", "Second floor.", *served) for _ in range(2))
    _age(store, old, days=31)
    _age(store, recent, days=29)
    assert store.clear_old_prompts(30) == 1
    cleared, kept = store.exchange(old), store.exchange(recent)
    assert cleared is not None and kept is not None
    assert cleared.prompt == [] and kept.prompt == prompt
    # What traces the reply stays: the row, its reply, the examples and the LoRA that produced it.
    assert (cleared.user_text, cleared.reply, cleared.example_ids, cleared.lora_version) == (
        "Where is the café?", "Second floor.", ("ex1",), "v0003")  # fmt: skip
    assert store.count_exchanges() == 2
    assert store.clear_old_prompts(30) == 0  # already cleared: nothing rewritten


def test_the_bot_clears_old_prompts_at_start_and_then_periodically(make_core: MakeCore) -> None:
    core = make_core(retention__prompt_days=30)
    exchange = core.answer(Message(CONV, "U1", "What is the VPN address?")).exchange_id
    _age(core.store, exchange, days=40)
    stop = keep_pruning(core, interval_s=0.05)
    try:
        deadline = time.monotonic() + 5
        while (found := core.store.exchange(exchange)) is not None and found.prompt and time.monotonic() < deadline:
            time.sleep(0.02)
        assert found is not None and found.prompt == [], "cleared at start"
        later = core.answer(Message(CONV, "U1", "And the proxy?")).exchange_id
        _age(core.store, later, days=40)
        while (found := core.store.exchange(later)) is not None and found.prompt and time.monotonic() < deadline:
            time.sleep(0.02)
        assert found is not None and found.prompt == [], "cleared at the next interval"
    finally:
        stop.set()


# LoRA candidates and training logs --------------------------------------------------------------


def test_candidates_are_pruned_to_the_setting_never_the_active_previous_or_loaded(tmp_path: Path) -> None:
    registry = LoraRegistry(tmp_path / "loras", "base", "fp1")
    _commit(registry, 10)
    for version in ("v0001", "v0002", "v0003"):  # served in turn: v0003 active, v0002 previous
        registry.promote(version, by="admin")
    assert registry.prune_candidates(keep=2, keep_loaded=3) == ["v0004", "v0005", "v0006", "v0007", "v0008"]
    assert [v.version for v in registry.versions()] == ["v0001", "v0002", "v0003", "v0009", "v0010"]
    assert not list(registry.root.glob(".staging-*"))  # deleted, not left half-way
    assert registry.prune_candidates(keep=2, keep_loaded=2) == ["v0001"]  # no longer one an engine holds
    assert registry.prune_candidates(keep=0, keep_loaded=0) == ["v0009", "v0010"]
    assert [(v.version, v.status) for v in registry.versions()] == [("v0002", "previous"), ("v0003", "active")]
    assert registry.rollback(by="admin") == "v0002"  # both still usable


def test_rotate_keeps_the_set_number_of_earlier_logs(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    for run in range(4):
        rotate(log, backups=2)
        log.write_text(f"run {run}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.log", "train.log.1", "train.log.2"]
    logs = [(tmp_path / name).read_text() for name in ("train.log", "train.log.1", "train.log.2")]
    assert logs == ["run 3", "run 2", "run 1"]
    rotate(log, backups=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.log.2"]  # left by the old setting: one more run
    rotate(log, backups=1)
    assert not list(tmp_path.iterdir())


def test_a_training_run_rotates_its_log_and_prunes_old_candidates(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runner = stand_in_runner(data_dir)
    runner.settings = runner.settings.model_copy(
        update={"retention": runner.settings.retention.model_copy(update={"keep_candidates": 1, "log_backups": 1})}
    )
    _commit(runner.registry, 3)
    runner.registry.promote("v0001", by="admin")
    runner.log_file.write_text("the run before the last\n")
    (runner.log_file.parent / "train.log.1").write_text("an older run\n")
    (data_dir / "stop").touch()  # the stand-in pipeline ends at once
    started = runner.start("slack:U1")
    assert started.ok and started.followup is not None
    assert started.followup.result(timeout=120) == "stand-in run by slack:U1"
    assert [v.version for v in runner.registry.versions()] == ["v0001", "v0003"]
    assert (runner.log_file.parent / "train.log.1").read_text() == "the run before the last\n"
    assert not (runner.log_file.parent / "train.log.2").exists()
    assert "the run before the last" not in runner.log_file.read_text()


# status and the worker's follow-up --------------------------------------------------------------


def test_status_shows_the_retention_settings(make_core: MakeCore) -> None:
    env = {"BOT_RETENTION_PROMPT_DAYS": "7", "BOT_RETENTION_KEEP_CANDIDATES": "2", "BOT_RETENTION_LOG_BACKUPS": "3"}
    assert load_settings(env=env).retention.model_dump() == {"prompt_days": 7, "keep_candidates": 2, "log_backups": 3}
    core = make_core(retention__prompt_days=7, retention__keep_candidates=2)
    assert "Retention: prompts 7 days, 2 LoRA candidates, 1 earlier train.log(s)" in status_text(core)
    assert status_data(core)["retention"] == {"prompt_days": 7, "keep_candidates": 2, "log_backups": 1}
    assert "Retention: prompts forever" in status_text(make_core(retention__prompt_days=0))


def _worker_runner(data_dir: Path, timeout_s: float) -> TrainingRunner:
    settings = conftest.test_settings(data_dir, training__runner="worker", training__worker_timeout_s=timeout_s)
    return TrainingRunner(settings, LoraRegistry.open(settings, "fp1"))


def test_a_worker_mode_retrain_gives_up_on_a_trainer_that_never_answers(tmp_path: Path) -> None:
    runner = _worker_runner(tmp_path / "data", timeout_s=0.5)
    asked = runner.start("slack:U1")
    assert asked.ok and asked.followup is not None
    reply = asked.followup.result(timeout=10)  # waited forever before
    assert "has not picked up the training request in 0.5 seconds" in reply and "bot trainer" in reply
    assert not remote.requested(runner.dir), "a request no trainer took is withdrawn"

    again = runner.start("slack:U1")  # a trainer takes this one, then dies
    assert again.ok and again.followup is not None
    assert remote.take_request(runner.dir) == "slack:U1"
    assert "has not finished the training request" in again.followup.result(timeout=10)
