"""The learning loop end to end on the real default model: retrain in a separate process, gate,
promote, live swap; and a kill during training that leaves the serving LoRA alone."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from bot.core import Core
from bot.evaluation import core_answerer, evaluate_file
from bot.stores.examples import parse_examples_file
from bot.training.status import TrainingStatus
from bot.types import ConversationKey, Message, Reply
from tests.conftest import BOTH_ENGINES, SAMPLE_DATA, commit_lora, tuned

pytestmark = [pytest.mark.slow, BOTH_ENGINES]  # the learning loop holds on either engine
CONV = ConversationKey("console", "loop")
# A fact the base model cannot know, and a tiny, fast training run.
QUESTION = "What is the name of the office cat?"
ANSWER = "The office cat is called Biscuit."
TINY = {
    "training__epochs": 8,
    "training__learning_rate": 1e-3,
    "tuning__holdout_fraction": 0.0,
    "tuning__replay_size": 0,
    "tuning__gate_heldout_margin": 1.0,  # a tiny run is not judged on quality here
    "tuning__gate_regression_margin": 1.0,
    "max_new_tokens": 12,
    # These tests ask without examples in the prompt to see the LoRA itself; by default the base
    # model would write those replies (lora_for = "examples", tested below and in test_lora_swap).
    "tuning__lora_for": "all",
}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def without_retrieval(core: Core) -> Core:
    """The same bot (model, stores, LoRA) answering with no examples in the prompt."""
    return Core(tuned(core.settings, retrieval_k=0), core.generation, core.examples, core.store)


def test_teach_retrain_promote_and_the_answer_changes(make_real_core) -> None:
    core = make_real_core(**TINY)
    taught = core.command("console", "local", f"teach {QUESTION} => {ANSWER}", CONV)
    assert taught.ok
    with_example = core.answer(Message(CONV, "local", QUESTION))
    assert with_example.example_ids  # learned at once: the taught answer is retrieved
    bare = without_retrieval(core)
    before = bare.answer(Message(ConversationKey("console", "before"), "local", QUESTION))
    assert before.lora_version is None and "biscuit" not in before.text.lower()

    started = core.command("console", "local", "retrain", CONV)
    assert started.ok and started.followup is not None and not started.ephemeral
    again = core.command("console", "local", "retrain", CONV)
    assert not again.ok and "already" in again.text  # one run at a time
    # The bot keeps answering while the LoRA trains in its own process.
    during = core.answer(Message(ConversationKey("console", "other"), "local", "Hello!"))
    assert during.text
    result = started.followup.result(timeout=1200)
    assert "promoted" in result, result

    versions = core.registry.versions()
    assert [v.status for v in versions] == ["active"]
    manifest = versions[0].manifest
    for key in ("base_fingerprint", "dataset", "losses", "eval", "triggered_by", "lora_config", "timings"):
        assert key in manifest, key
    assert manifest["promote"] is True and manifest["eval"]["candidate"]["regression_total"] > 0
    assert versions[0].version in core.command("console", "local", "lora list", CONV).text
    assert (core.registry.root / versions[0].version / "loss.png").is_file()
    assert "Loss curve" in core.command("console", "local", "status", CONV).text

    # Without the example in the prompt, the reply changes only if the LoRA changed the model.
    # (It learns to use verified answers, not to memorize them: docs/training.md.)
    after = bare.answer(Message(ConversationKey("console", "after"), "local", QUESTION))
    assert after.lora_version == versions[0].version  # swapped in live, recorded on the exchange
    assert core.store.exchange(after.exchange_id).lora_version == versions[0].version
    assert after.text != before.text, after.text
    rolled = core.command("console", "local", "lora rollback", CONV)
    assert rolled.ok and "base model" in rolled.text
    assert bare.answer(Message(ConversationKey("console", "back"), "local", QUESTION)).text == before.text


def test_kill_during_training_leaves_the_previous_lora_serving(make_real_core, random_loras) -> None:
    core = make_real_core(**{**TINY, "training__epochs": 200})  # long enough to be killed mid-run
    core.rules.teach("console", "local", QUESTION, ANSWER)
    registry = core.registry
    # A random LoRA stands in for "the LoRA serving before" without a second training run.
    previous = commit_lora(registry, random_loras[0])
    assert core.command("console", "local", f"lora use {previous}", CONV).ok
    pointers_before = (registry.root / "pointers.json").read_bytes()

    started = core.command("console", "local", "retrain", CONV)
    assert started.ok

    def trained_a_step() -> TrainingStatus | None:
        status = core.trainer.read_status()
        return status if status is not None and status.step >= 1 else None

    os.kill(wait_for(trained_a_step, 900, "the first training step").pid, signal.SIGKILL)
    message = started.followup.result(timeout=60)
    assert "failed" in message.lower() and "keeps serving" in message

    assert [v.version for v in registry.versions()] == [previous]  # no half-written version listed
    assert (registry.root / "pointers.json").read_bytes() == pointers_before
    assert not core.trainer.running()  # the lock died with the process
    reply = core.answer(Message(CONV, "local", "Hello?"))
    assert reply.lora_version == previous  # what served before still serves


def test_a_retrain_on_default_settings_is_promoted_and_answers_paraphrases(make_real_core, tmp_path) -> None:
    """The product's promise on a small fact set: every setting at its default, `retrain` is promoted
    by the default gate (no regression answer lost, held-out facts no worse) and serves at once."""
    core = make_real_core()
    facts = parse_examples_file(SAMPLE_DATA / "acme_examples.jsonl")[:8]
    core.examples.upsert(facts, source="import")
    taught = {f.input for f in facts}
    paraphrases = tmp_path / "paraphrases.jsonl"  # the eval questions about the taught facts
    lines = (SAMPLE_DATA / "acme_eval.jsonl").read_text().splitlines()
    paraphrases.write_text("".join(f"{line}\n" for line in lines if json.loads(line)["source"] in taught))

    started = core.command("console", "local", "retrain", CONV)
    assert started.ok
    result = started.followup.result(timeout=1800)
    assert "promoted and now serving" in result, result
    version = core.registry.versions()[-1]
    assert version.status == "active" and core.registry.active_lora()[0] == version.version
    gate = version.manifest["eval"]
    assert gate["candidate"]["regression_hits"] >= gate["baseline"]["regression_hits"]

    def check(_question: str, reply: Reply) -> None:
        # The new LoRA writes every reply that holds a verified answer; the base model the others.
        assert reply.lora_version == (version.version if reply.example_ids else None)

    report = evaluate_file(core_answerer(core, "paraphrases", check), paraphrases)
    assert report.total >= 12 and report.accuracy >= 0.6, report.misses
