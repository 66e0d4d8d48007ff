"""A second retrain continues the serving LoRA on what is new since it trained (bot/finetune/continued.py),
on the real default model, through the same `retrain` command, gate and registry as the first."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from bot.finetune.continued import TRAINED_FILE
from bot.types import ConversationKey, Message
from tests.test_learning_loop import CONV, TINY, without_retrieval

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("serving_engine", ["llama.cpp"], indirect=True)]
FIRST = ("What is the name of the office cat?", "The office cat is called Biscuit.")
SECOND = ("What is the wifi password in the lab?", "The lab wifi password is Quokka-4711.")


def retrain(core) -> str:
    started = core.command("console", "local", "retrain", CONV)
    assert started.ok, started.text
    return started.followup.result(timeout=1200)


def test_the_second_retrain_continues_the_first_on_what_is_new(make_real_core) -> None:
    core = make_real_core(**TINY)
    core.rules.teach("console", "local", *FIRST)
    first = retrain(core)
    assert "promoted" in first and "trained from scratch on 1 example" in first, first
    v1 = core.registry.versions()[-1]
    assert v1.manifest["continued_from"] is None and v1.manifest["pairs_learned"] == 1

    core.rules.teach("console", "local", *SECOND)
    bare = without_retrieval(core)
    before = bare.answer(Message(ConversationKey("console", "before"), "local", SECOND[0]))
    assert before.lora_version == v1.version
    second = retrain(core)
    assert "promoted" in second and f"continued {v1.version} on 1 new example(s) and 1 old ones" in second, second
    v2 = core.registry.versions()[-1]
    assert v2.manifest["continued_from"] == v1.version and v2.manifest["compared_with"] == v1.version
    assert v2.manifest["dataset"]["counts"]["trained"] == 2 and v2.manifest["pairs_learned"] == 2
    assert len(json.loads((core.registry.path_for(v2.version) / TRAINED_FILE).read_text())["pairs"]) == 2

    # It started from v1's weights and moved on from them: the same LoRA, trained further.
    first_weights = load_file(str(core.registry.path_for(v1.version) / "adapter_model.safetensors"))
    second_weights = load_file(str(core.registry.path_for(v2.version) / "adapter_model.safetensors"))
    assert first_weights.keys() == second_weights.keys()
    assert any(not first_weights[name].equal(second_weights[name]) for name in first_weights)
    # The continued LoRA serves at once, and what it learned shows without the example in the prompt.
    after = bare.answer(Message(ConversationKey("console", "after"), "local", SECOND[0]))
    assert after.lora_version == v2.version and after.text != before.text, after.text
