"""Live LoRA swaps on the real 4-bit model: nothing in flight fails, every reply names its LoRA."""

from __future__ import annotations

import threading

import pytest

from bot.stores.lora_registry import LoraRegistry
from bot.types import ConversationKey, Message
from tests.conftest import BOTH_ENGINES, commit_lora

pytestmark = [pytest.mark.slow, BOTH_ENGINES]  # the learning loop holds on either engine


def test_swap_and_rollback_under_load_lose_nothing(make_real_core, random_loras) -> None:
    core = make_real_core(max_new_tokens=6, tuning__keep_loaded=2, tuning__lora_for="all")
    registry: LoraRegistry = core.registry
    v1, v2 = (commit_lora(registry, path) for path in random_loras)
    base_reply = core.answer(Message(ConversationKey("t", "base"), "u", "Say hello."))
    assert base_reply.lora_version is None

    replies, errors, votes = [], [], []

    def chatter(n: int) -> None:
        for i in range(3):
            try:
                reply = core.answer(Message(ConversationKey("t", f"c{n}-{i}"), f"user{n}", "Say hello."))
                replies.append(reply)
                votes.append(core.rules.vote(reply.exchange_id, "t", f"voter{n}", 1))
            except Exception as exc:  # any failure in flight is the bug this test is for
                errors.append(exc)

    threads = [threading.Thread(target=chatter, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    used = core.command("console", "local", f"lora use {v1}", ConversationKey("t", "a"))
    assert "Now serving LoRA v0001" in used.text
    core.command("console", "local", f"lora use {v2}", ConversationKey("t", "a"))
    rolled = core.command("console", "local", "lora rollback", ConversationKey("t", "a"))
    assert rolled.ok and "now serving v0001" in rolled.text
    for thread in threads:
        thread.join(timeout=600)

    assert errors == [] and len(replies) == 9
    assert {r.lora_version for r in replies} <= {None, v1, v2}
    stored = {e.id: e.lora_version for e in core.store.exchanges()}
    assert all(stored[r.exchange_id] == r.lora_version for r in replies)  # every reply traceable
    assert all(core.store.score(r.exchange_id) == 1 for r in replies)  # no vote lost during swaps
    after = core.answer(Message(ConversationKey("t", "after"), "u", "Say hello."))
    assert after.lora_version == v1
    assert core.generation.engine.loras.loaded() == [v2, v1]  # both stay loaded for fast rollback


def test_old_versions_are_unloaded_but_kept_on_disk(make_real_core, random_loras) -> None:
    core = make_real_core(max_new_tokens=2, tuning__keep_loaded=2, tuning__lora_for="all")
    registry: LoraRegistry = core.registry
    versions = [commit_lora(registry, random_loras[i % 2]) for i in range(3)]
    for version in versions:
        core.command("console", "local", f"lora use {version}", ConversationKey("t", "a"))
    assert core.generation.engine.loras.loaded() == versions[1:]
    assert [v.version for v in registry.versions()] == versions
    rolled = core.command("console", "local", "lora rollback", ConversationKey("t", "a"))
    assert rolled.ok and core.generation.engine.loras.version == versions[1]


def test_lora_for_another_base_model_is_refused(make_real_core, random_loras) -> None:
    core = make_real_core()
    foreign = LoraRegistry(core.registry.root, "someone-elses-model", "0000")
    staging = foreign.new_staging()
    for file in random_loras[0].iterdir():
        (staging / file.name).write_bytes(file.read_bytes())
    version = foreign.commit(staging, {}).version
    result = core.command("console", "local", f"lora use {version}", ConversationKey("t", "a"))
    assert not result.ok and "cannot be used" in result.text
    assert core.registry.active_lora() is None and core.generation.engine.loras.version is None


def test_the_lora_writes_only_replies_whose_prompt_holds_a_verified_answer(make_real_core, random_loras) -> None:
    core = make_real_core(max_new_tokens=12)  # lora_for = "examples", the default
    core.examples.add("What is the office wifi password?", "The wifi password is biscuit42.", "good", "taught")
    version = commit_lora(core.registry, random_loras[0])

    def ask(text: str):
        return core.answer(Message(ConversationKey("t", text + str(len(core.store.exchanges()))), "u", text))

    base_general, base_team = ask("Say hello."), ask("What is the office wifi password?")
    assert base_team.example_ids and not base_general.example_ids
    core.command("console", "local", f"lora use {version}", ConversationKey("t", "a"))
    general, team = ask("Say hello."), ask("What is the office wifi password?")

    assert general.lora_version is None and general.text == base_general.text  # the base model wrote it
    assert team.lora_version == version and team.text != base_team.text  # the LoRA wrote it
    stored = {e.id: e.lora_version for e in core.store.exchanges()}
    assert stored[general.exchange_id] is None and stored[team.exchange_id] == version


def test_a_version_named_like_one_of_another_registry_is_its_own_lora(make_real_core, random_loras, tmp_path) -> None:
    """Version names are unique in one registry only: a v0001 of a recreated data dir is new weights."""

    def serve(data_dir, lora):
        core = make_real_core(data_dir=data_dir, max_new_tokens=8, tuning__lora_for="all")
        version = commit_lora(core.registry, lora)
        core.command("console", "local", f"lora use {version}", ConversationKey("t", "a"))
        return version, core.answer(Message(ConversationKey("t", "q"), "u", "Say hello.")).text

    first_version, first = serve(tmp_path / "a", random_loras[0])
    second_version, second = serve(tmp_path / "b", random_loras[1])
    assert first_version == second_version == "v0001"
    assert second != first  # the second registry's v0001, not the first one's still in memory
