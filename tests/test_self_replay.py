"""Base-model replies kept between retrains (bot/finetune/base_replies.py) and replay rows in the base
model's own words (bot/finetune/self_replay.py), on the fake engine."""

from __future__ import annotations

from pathlib import Path

from bot.finetune.base_replies import CACHE_FILE, BaseReplies
from bot.finetune.self_replay import MAX_NEW_TOKENS, SelfAnswers
from bot.generation.engine import NO_HINTS, ReplyHints
from bot.training.dataset import build_training_data
from tests.conftest import MakeCore, tuned
from tests.conftest import test_settings as settings_for
from tests.fakes import FakeEngine


def _base_model(question_to_reply: dict[str, str]) -> FakeEngine:
    """A base model that answers by the last word of the prompt it knows (fake ids are per word)."""
    engine = FakeEngine()
    ids = {engine.tokenizer(w)["input_ids"][0]: reply for w, reply in question_to_reply.items()}

    def reply(prompt: list[int]) -> str:
        return next((ids[t] for t in reversed(prompt) if t in ids), "I do not know.")

    engine.reply = reply
    return engine


def test_replay_targets_are_the_base_models_words_when_they_state_the_facts(
    make_core: MakeCore, tmp_path: Path
) -> None:
    core = make_core(tuning__lora_for="all")  # every replay row kept, with or without an example in its prompt
    settings = core.settings.model_copy(update={"tuning": core.settings.tuning.model_copy(update={"replay_size": 32})})
    engine = _base_model({
        "Italy?": "Rome is the capital of Italy.",  # the facts in its own words: kept
        "Japan?": "The capital of Japan is Kyoto.",  # a wrong fact: the written answer stays
        "bees": "word " * (MAX_NEW_TOKENS + 5),  # ran on without ending: the written answer stays
    })  # fmt: skip
    base = BaseReplies(engine, settings, "base-fp", tmp_path / CACHE_FILE)
    answers = SelfAnswers(base, settings)
    data = build_training_data(settings, core.examples, core.store, replay_answer=answers)
    base.save()
    replay = {r.messages[-1]["content"]: r.completion for r in data.train if r.source == "replay"}
    assert replay["What is the capital of Italy?"] == "Rome is the capital of Italy."
    assert replay["What is the capital of Japan?"] == "The capital of Japan is Tokyo."
    assert replay["What do bees make?"] == "Bees make honey and beeswax."
    assert answers.asked == 32 and answers.kept >= 1 and base.misses == 32
    written = build_training_data(settings, core.examples, core.store)
    assert written.fingerprint != data.fingerprint  # the targets are part of what was trained

    # The next run reads the base model's replies back instead of asking it again.
    calls = len(engine.calls)
    again = BaseReplies(engine, settings, "base-fp", tmp_path / CACHE_FILE)
    rebuilt = build_training_data(settings, core.examples, core.store, replay_answer=SelfAnswers(again, settings))
    assert rebuilt.fingerprint == data.fingerprint and again.hits == 32 and len(engine.calls) == calls


def test_base_replies_are_kept_per_weights_settings_and_prompt_and_never_for_a_lora(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    settings = settings_for(tmp_path)
    engine = FakeEngine("Paris is the capital.")
    texts: list[str] = []

    def ask(base: BaseReplies, prompt: list[int], hints: ReplyHints = NO_HINTS) -> int:
        return base.generate(prompt, 20, texts.append, hints)

    first = BaseReplies(engine, settings, "weights-a", path)
    assert ask(first, [1, 2, 3]) == 4 and ask(first, [1, 2, 3]) == 4  # four words
    assert (first.misses, first.hits, len(engine.calls)) == (1, 1, 1)
    assert texts[-1] == "Paris is the capital."  # the whole reply, in one piece
    first.save()

    assert BaseReplies(engine, settings, "weights-a", path).generate([1, 2, 3], 20, texts.append) == 4
    assert len(engine.calls) == 1
    for other in (
        BaseReplies(engine, settings, "weights-b", path),  # other weights
        BaseReplies(engine, tuned(settings, repetition_penalty=1.2), "weights-a", path),
    ):
        ask(other, [1, 2, 3])
        assert other.misses == 1
    calls = len(engine.calls)
    sampled = BaseReplies(engine, tuned(settings, temperature=0.7), "weights-a", path)
    ask(sampled, [1, 2, 3])
    assert len(engine.calls) == calls + 1 and sampled.hits == 0  # sampling is never replayed

    with_lora = FakeEngine("LoRA words.", lora_source=lambda: ("v0001", tmp_path))
    with_lora.loras.sync()
    routed = BaseReplies(with_lora, settings, "weights-a", path)
    ask(routed, [1, 2, 3])  # a LoRA writes it: asked, not cached
    ask(routed, [1, 2, 3], ReplyHints(base_only=True))  # the base writes it: cached
    assert len(with_lora.calls) == 1 and routed.hits == 1


def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    path.write_text("{not json")
    base = BaseReplies(FakeEngine("x"), settings_for(tmp_path), "fp", path)
    base.generate([1], 5, lambda _t: None)
    base.save()
    assert BaseReplies(FakeEngine("x"), settings_for(tmp_path), "fp", path).generate([1], 5, lambda _t: None) == 1
