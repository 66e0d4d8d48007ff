"""The example store, embedded in the data directory and on a real chromadb server (`chroma run`):
the same retrieval, filters, scopes and bookkeeping on both."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.stores.examples import ExampleStore, example_id, parse_examples_file
from bot.types import (
    ALL_SCOPES,
    GLOBAL_SCOPE,
    ConversationKey,
    Incoming,
    Reaction,
    UserError,
    workspace_scope,
)
from tests.fakes import FakeEmbedder, FakeEngine

MakeStore = Callable[[], ExampleStore]


@pytest.fixture(params=["embedded", "server"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    if request.param == "embedded":
        return lambda: ExampleStore(FakeEmbedder(), tmp_path / "chroma")
    url = request.getfixturevalue("chroma_server")
    collection = f"test-{uuid.uuid4().hex}"  # one server for the session: each test its own collection
    return lambda: ExampleStore.remote(FakeEmbedder(), url, collection)


def test_retrieval_filters_floor_label_and_near_duplicates(make_store: MakeStore) -> None:
    store = make_store()
    store.add("reset my password please", "Use the link.", "good", "import")
    store.add("reset my password please", "Use the link!", "good", "import")  # near-duplicate
    store.add("reset my password now", "Do not.", "bad", "import")
    store.add("completely unrelated bananas", "Yellow.", "good", "import")
    found = store.retrieve("how to reset my password", k=3, min_similarity=0.3, dedup_similarity=0.95)
    assert [e.output for e in found] == ["Use the link."] or [e.output for e in found] == ["Use the link!"]
    assert found[0].similarity is not None and found[0].similarity >= 0.3
    assert store.retrieve("anything", k=0, min_similarity=0, dedup_similarity=1) == []


def test_reimport_does_not_duplicate_and_ids_are_stable(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store()
    file = tmp_path / "ex.jsonl"
    file.write_text('{"input": "a", "output": "b"}\n{"input": "c", "output": "d", "label": "bad"}\n')
    store.upsert(parse_examples_file(file), "import")
    store.upsert(parse_examples_file(file), "import")
    assert store.count() == 2
    assert {e.id for e in store.list()} == {example_id("a", "b"), example_id("c", "d")}
    assert store.remove([example_id("a", "b"), "nope"]) == 1


def test_scopes_keep_what_a_workspace_learned_there(make_store: MakeStore) -> None:
    store = make_store()
    here, there = workspace_scope("slack", "T1"), workspace_scope("slack", "T2")
    store.add("where is the kitchen", "Second floor.", "good", "taught")  # global
    store.add("where is the kitchen today", "Closed today.", "good", "vote", "x1", here)
    assert {e.output for e in store.retrieve("where is the kitchen", 3, 0.2, 0.99, here)} == {
        "Second floor.",
        "Closed today.",
    }
    assert [e.output for e in store.retrieve("where is the kitchen", 3, 0.2, 0.99, there)] == ["Second floor."]
    assert len(store.retrieve("where is the kitchen", 3, 0.2, 0.99, ALL_SCOPES)) == 2
    assert store.add_if_new("where is the kitchen today", "Closed today.", "vote", "x1", here) is None
    assert [e.scope for e in store.get([example_id("where is the kitchen", "Second floor.")])] == [GLOBAL_SCOPE]


def test_a_vote_makes_an_example_on_the_server_that_another_replica_retrieves(make_core, chroma_server) -> None:
    """Two cores (two replicas) on one chromadb server: what one learns, the other retrieves at once."""
    collection = f"test-{uuid.uuid4().hex}"
    first, second = (
        make_core(FakeEngine("Use the link."), examples=ExampleStore.remote(FakeEmbedder(), chroma_server, collection))
        for _ in range(2)
    )
    conversation = ConversationKey("slack", "C1", "t1")
    answering = first.handle(Incoming("slack", conversation, "U1", "how do I reset my password", mentions_bot=True))
    reply = [e for e in answering.events][-1].reply  # type: ignore[union-attr]
    first.link_message(reply.exchange_id, "slack", "C1:1.0")
    first.handle(Reaction("slack", "C1:1.0", "U2", "+1", added=True))
    found = second.examples.retrieve("how do I reset my password", 3, 0.2, 0.95, workspace_scope("slack", "C1"))
    assert [e.output for e in found] == ["Use the link."]


def test_a_bad_server_url_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="must look like http://host:8000"):
        ExampleStore.remote(FakeEmbedder(), "chroma:8000")
