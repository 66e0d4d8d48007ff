"""What a retrain that continues the serving LoRA trains on (bot/finetune/continued.py), on fakes."""

from __future__ import annotations

import json
from pathlib import Path

from bot.config import load_settings
from bot.training.dataset import OLD_REPLAY_MIN, build_training_data, pair_key
from tests.conftest import MakeCore, tuned
from tests.test_training import FACTS, no_holdout, teach_all


def test_a_continued_run_trains_on_what_is_new_and_replays_some_of_the_rest(make_core: MakeCore) -> None:
    core = make_core()
    more = [(f"What is code number {n}?", f"Code number {n} is {7000 + n}.") for n in range(12)]
    teach_all(core, FACTS + more)
    no_holdout(core, replay_size=0)
    full = build_training_data(core.settings, core.examples, core.store)
    assert not full.continued and len(full.trained) == len(FACTS) + len(more)
    seen = frozenset(pair_key(q, a) for q, a in more)  # the parent LoRA learned these
    core.rules.teach("console", "local", FACTS[0][0], "The reset link expires after 45 minutes.")  # an edit is new
    data = build_training_data(core.settings, core.examples, core.store, seen=seen)
    asked = {row.question for row in data.train}
    assert data.continued and {q for q, _ in FACTS} <= asked
    assert data.counts["trained"] == len(FACTS) + OLD_REPLAY_MIN and data.counts["old_replayed"] == OLD_REPLAY_MIN
    assert len([q for q, _ in more if q in asked]) == OLD_REPLAY_MIN  # a replay sample of the old pairs
    assert any("45 minutes" in row.completion for row in data.train)
    assert build_training_data(core.settings, core.examples, core.store, seen=seen).fingerprint == data.fingerprint
    everything = frozenset(pair_key(p.question, p.answer) for p in data.examples)
    nothing_new = build_training_data(core.settings, core.examples, core.store, seen=everything)
    assert not nothing_new.continued and nothing_new.counts["trained"] == len(data.examples)  # from scratch


def test_a_retrain_continues_only_a_lora_of_the_same_shape_that_says_what_it_learned(tmp_path: Path) -> None:
    from bot.finetune.continued import TRAINED_FILE, parent_for, save_trained
    from bot.finetune.qlora import TARGET_MODULES
    from bot.training.dataset import Pair

    settings = tuned(load_settings(env={}, data_dir=str(tmp_path / "data")))
    lora = tmp_path / "v0001"
    lora.mkdir()
    assert parent_for(("v0001", lora), settings) is None  # a LoRA from before the file existed
    pair = Pair("q?", "a.", "taught", "e1")
    assert save_trained(lora, None, [pair]) == 1
    config = {"r": settings.training.lora_r, "target_modules": list(TARGET_MODULES)}
    (lora / "adapter_config.json").write_text(json.dumps(config))
    parent = parent_for(("v0001", lora), settings)
    assert parent is not None and parent.seen == {pair_key("Q? ", "a.")}
    assert save_trained(tmp_path, parent, [Pair("other?", "b.", "taught", "e2")]) == 2
    assert len(json.loads((tmp_path / TRAINED_FILE).read_text())["pairs"]) == 2
    assert parent_for(None, settings) is None
    assert parent_for(("v0001", lora), tuned(settings, continue_training=False)) is None
    other_rank = settings.model_copy(update={"training": settings.training.model_copy(update={"lora_r": 64})})
    assert parent_for(("v0001", lora), other_rank) is None
