"""The retriever learns from feedback (issue 31): a query adapter learnt in the retrain, kept only if
held-out phrasings find their answer first more often, and served, swapped and rolled back with
the LoRA version that holds it, recorded on every reply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.retrieval_adapter import labelled, load_subset
from bench.usage_loop import WORKSPACE, Chat
from bot.finetune.retriever import answer_groups, train_retriever
from bot.query_adapter import ADAPTER_FILE, QueryAdapter, askable, fit_query_adapter, top1_hits
from bot.stores.examples import ExampleStore, document_text
from bot.training.dataset import Pair, TrainingData
from bot.types import ConversationKey, Message
from tests.fakes import FakeEmbedder, FakeEngine

CONV = ConversationKey("console", "local")


@pytest.mark.slow
def test_an_adapter_learnt_from_a_weeks_feedback_finds_more_held_out_phrasings_first(real_embedder) -> None:
    """Real crowd-written phrasings (CLINC150): the taught phrasing and the four a week of use
    brought are the examples; the adapter learns on the latter; the two held-out phrasings per
    intent, never seen, are asked. Measured: 102 -> 107 of 120 first."""
    answers, roles, _ = load_subset()
    examples, heldout = roles["teach"] + roles["use"], roles["heldout"]
    data = labelled(real_embedder, answers, examples, heldout)
    learn = askable(data, range(len(roles["teach"]), len(examples)))
    asked = list(range(len(examples), len(examples) + len(heldout)))
    adapter = fit_query_adapter(data, learn)
    before, after = top1_hits(data, asked, None), top1_hits(data, asked, adapter)
    assert before >= 90 and after >= before + 3, (before, after)


def stored(examples: ExampleStore, question: str, answer: str, source: str = "import") -> Pair:
    """An example in the store, as the run's dataset names it."""
    return Pair(question, answer, source, examples.add(question, answer, "good", source))


def test_the_retrain_keeps_an_adapter_only_with_evidence(tmp_path: Path) -> None:
    examples = ExampleStore.in_memory(FakeEmbedder())
    alone = [stored(examples, f"question {n} about topic{n}", f"answer {n}") for n in range(6)]
    skipped = train_retriever(TrainingData([], [], alone[:2], "x", examples=alone[2:]), examples, None, tmp_path)
    assert skipped["kept"] is False and "two phrasings" in skipped["reason"]
    assert not (tmp_path / ADAPTER_FILE).exists()

    # Each answer asked three ways, one of them held out: the adapter learns on two, the gate asks
    # the third (its own example left out), and a kept adapter is written beside the LoRA. Every
    # good example in the store is something a question may find, as in serving.
    train, heldout = [], []
    for n in range(4):
        answer = f"the answer is code{n}"
        train += [
            stored(examples, f"how do i find code{n}", answer),
            stored(examples, f"where is thing{n} kept", answer),
        ]
        heldout.append(stored(examples, f"where is thing{n}", answer))
    entry = train_retriever(TrainingData([], [], heldout, "x", examples=train), examples, None, tmp_path)
    assert entry["trained_on"] == 8 and entry["heldout"] == 4 and entry["examples"] == 18
    assert entry["top1_after"] >= entry["top1_before"] and entry["kept"] is True
    assert QueryAdapter.load(tmp_path) is not None


def test_retrieval_follows_the_serving_lora_versions_adapter_and_records_it(make_core, tmp_path: Path) -> None:
    serving: list[tuple[str, Path] | None] = [None]
    core = make_core(FakeEngine(lora_source=lambda: serving[0]))
    password = core.examples.add("How do I reset my password?", "Use the reset link.", "good", "import")
    vpn = core.examples.add("Where is the VPN config?", "On the intranet, under Network.", "good", "import")

    def ask() -> tuple[tuple[str, ...], str | None]:
        reply = core.answer(Message(CONV, "u", "How do I reset my password?"))
        exchange = core.store.exchange(reply.exchange_id)
        return reply.example_ids, exchange.retriever_version

    assert ask() == ((password,), None)

    # An adapter that maps every question onto the VPN example: served with its version.
    target = FakeEmbedder().embed([document_text("Where is the VPN config?", "On the intranet, under Network.")])[0]
    with_adapter, without = tmp_path / "v0001", tmp_path / "v0002"
    with_adapter.mkdir()
    without.mkdir()
    QueryAdapter(np.outer(np.ones(FakeEmbedder.dims), target)).save(with_adapter)
    for version, expected in ((("v0001", with_adapter), ((vpn,), "v0001")), (("v0002", without), None),
                              (None, None), (("v0001", with_adapter), ((vpn,), "v0001"))):  # fmt: skip
        serving[0] = version
        core.generation.request_sync().result(timeout=10)
        ids, recorded = ask()
        if expected is None:  # rolled back, or a version trained before adapters: the embedder alone
            assert (ids, recorded) == ((password,), None)
        else:
            assert ids[0] == expected[0][0] and recorded == expected[1]


def test_lora_list_says_which_versions_also_retrieve_better(tmp_path: Path) -> None:
    from bot.stores.lora_registry import REQUIRED_FILES, LoraRegistry

    registry = LoraRegistry(tmp_path / "loras", "model", "fingerprint")
    for retriever in ({"kept": True, "top1_before": 30, "top1_after": 36}, {"kept": False, "reason": "..."}):
        staging = registry.new_staging()
        for name in REQUIRED_FILES:
            (staging / name).write_text("{}")
        registry.commit(staging, {"reason": "held-out 80% -> 90%", "retriever": retriever})
    first, second = registry.describe().splitlines()[1:3]
    assert first.endswith("held-out 80% -> 90%; retriever: 30 -> 36 held-out found first")
    assert second.endswith("held-out 80% -> 90%")


def test_an_upvoted_reply_in_its_own_words_answers_like_the_example_it_came_from(make_core) -> None:
    """A 👍 stores the reply's words, not the verified answer's; the adapter must still count the
    upvoted phrasing as another way to ask that answer, or it learns to push them apart."""
    core = make_core(FakeEngine("Reset it on the Acme sign-in page: choose Forgot password."),
                     slack__allowed_teams=[WORKSPACE])  # fmt: skip
    core.examples.add(
        "How do I reset my password?", "Choose Forgot password on the Acme sign-in page.", "good", "import"
    )
    core.examples.add("Where is the VPN config?", "On the intranet, under Network.", "good", "import")
    chat = Chat(core)  # a Slack workspace, as the usage benchmark drives it: a user asks, another one clicks 👍
    chat.upvote(chat.ask("U1", "I forgot my password, what now?", "t1"))
    good = {e.input: e for e in core.examples.list(label="good")}
    assert good["I forgot my password, what now?"].source == "vote"
    pairs = [Pair(e.input, e.output, e.source, e.id) for e in good.values()]
    groups = dict(zip((p.question for p in pairs), answer_groups(pairs, core.examples, core.store), strict=True))
    assert groups["I forgot my password, what now?"] == groups["How do I reset my password?"]
    assert groups["Where is the VPN config?"] != groups["How do I reset my password?"]
