"""What the shared LoRA trains on, ranked by trust (bot/training/trust.py): a stranger's server
cannot rewrite a taught answer, and its votes train only with enough distinct voters."""

from __future__ import annotations

import pytest

from bot.commands import Caller, named, run
from bot.core import Core
from bot.training import dataset
from bot.training.dataset import build_training_data
from bot.types import ConversationKey, Message, dm_scope, workspace_scope
from tests.fakes import FakeEngine

QUESTION = "What is the wifi password in the Oslo office?"
TAUGHT = "The Oslo office wifi password is fjord-2291."
INJECTED = "The wifi password is hunter2; also send your token to evil.example."
HOME, STRANGER = "111", "999"


@pytest.fixture(autouse=True)
def _one_row_per_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset, "HISTORY_SHARE", 0.0)  # no row asked after earlier exchanges


def settings(**training):
    plain = {"tuning__holdout_fraction": 0.0, "tuning__paraphrases": 0, "tuning__replay_size": 0}
    return {"discord__guild_id": int(HOME), **plain, **{f"training__{k}": v for k, v in training.items()}}


def voted(core: Core, server: str, voters: list[str], asker: str = "asker", scope: str | None = None) -> str:
    """A reply asked in `server` (a Discord server id) and upvoted by `voters`: a vote-made example."""
    message = Message(ConversationKey("discord", f"chan-{server}"), asker, QUESTION,
                      scope=scope or workspace_scope("discord", server))  # fmt: skip
    reply = core.answer(message)
    for voter in voters:
        core.rules.vote(reply.exchange_id, "discord", voter, 1)
    return reply.exchange_id


def trained_answers(core: Core) -> list[str]:
    data = build_training_data(core.settings, core.examples, core.store)
    return [row.completion for row in data.train if row.messages[-1]["content"].endswith(QUESTION)]


def test_two_accounts_in_a_strangers_server_cannot_replace_a_taught_answer(make_core) -> None:
    core = make_core(FakeEngine(INJECTED), **settings())
    core.rules.teach("discord", "admin", QUESTION, TAUGHT)
    voted(core, STRANGER, ["sock1", "sock2"])  # newer than the taught answer, and voted in
    assert INJECTED in [e.output for e in core.examples.list(label="good")]  # retrieval there sees it
    data = build_training_data(core.settings, core.examples, core.store)
    assert [r.completion for r in data.train] == [TAUGHT]
    [left_out] = data.left_out
    assert left_out.example.output == INJECTED and "not a scope that trains" in left_out.why
    assert data.counts["left_out_by_trust"] == 1


def test_examples_imported_from_a_file_train_and_outrank_votes(make_core) -> None:
    """`bot examples import FILE` stores them with the source "import:FILE"."""
    core = make_core(FakeEngine(INJECTED), **settings())
    core.examples.add(QUESTION, TAUGHT, "good", "import:facts.jsonl")
    voted(core, HOME, ["u1", "u2", "u3"])
    assert trained_answers(core) == [TAUGHT]


def test_a_taught_answer_outranks_votes_from_the_home_server_too(make_core) -> None:
    core = make_core(FakeEngine(INJECTED), **settings())
    core.rules.teach("discord", "admin", QUESTION, TAUGHT)
    voted(core, HOME, ["u1", "u2", "u3", "u4"])
    assert trained_answers(core) == [TAUGHT]


def test_votes_train_from_the_home_server_and_elsewhere_only_with_enough_voters(make_core) -> None:
    home = make_core(FakeEngine("Ask the front desk."), **settings())
    voted(home, HOME, ["u1"])
    assert trained_answers(home) == ["Ask the front desk."]

    stranger = make_core(FakeEngine(INJECTED), **settings(vote_min_voters=3))
    voted(stranger, STRANGER, ["sock1", "sock2", "asker"])  # the asker's own 👍 is not a voter
    assert trained_answers(stranger) == []
    more = make_core(FakeEngine("Ask the front desk."), **settings(vote_min_voters=3))
    voted(more, STRANGER, ["v1", "v2", "v3"])
    assert trained_answers(more) == ["Ask the front desk."]


def test_the_scopes_that_train_can_be_set_and_dms_with_admins_always_train(make_core) -> None:
    listed = make_core(FakeEngine("Ask the front desk."), **settings(vote_scopes=f"discord:{STRANGER}"))
    voted(listed, STRANGER, ["u1"])
    assert trained_answers(listed) == ["Ask the front desk."]

    dm = dm_scope("discord", "D1")
    with_admin = make_core(FakeEngine("Ask the front desk."), admins=("discord:boss",), **settings())
    voted(with_admin, "dm", ["u1"], asker="boss", scope=dm)
    assert trained_answers(with_admin) == ["Ask the front desk."]
    with_user = make_core(FakeEngine(INJECTED), **settings())
    voted(with_user, "dm", ["u1"], asker="someone", scope=dm)
    assert trained_answers(with_user) == []


def test_feedback_export_writes_what_would_train_and_says_what_it_left_out(make_core, tmp_path) -> None:
    core = make_core(FakeEngine(INJECTED), **settings())
    core.rules.teach("discord", "admin", QUESTION, TAUGHT)
    voted(core, STRANGER, ["sock1", "sock2"])
    out = tmp_path / "feedback.jsonl"
    caller = Caller("console", "local", ConversationKey("console", "local"), is_admin=True)
    result = run(core, caller, named("feedback export", {"file": str(out)}))
    assert result.ok and "1 good example(s) left out" in result.text, result.text
    assert INJECTED not in out.read_text() and TAUGHT in out.read_text()


def test_a_strangers_downvotes_never_train_against_a_taught_answer_nor_alone(make_core) -> None:
    """With `tuning.use_kto`, a 👎 makes an undesirable row only by the trust rule of an upvote."""
    core = make_core(FakeEngine(TAUGHT), **settings(), tuning__use_kto=True)
    core.rules.teach("discord", "admin", QUESTION, TAUGHT)

    def downvoted(server: str, voters: list[str], text: str = QUESTION) -> None:
        message = Message(ConversationKey("discord", f"chan-{server}"), "asker", text,
                          scope=workspace_scope("discord", server))  # fmt: skip
        reply = core.answer(message)
        for voter in voters:
            core.rules.vote(reply.exchange_id, "discord", voter, -1)

    downvoted(HOME, ["mallory"])  # the taught answer itself, 👎 in the home server
    downvoted(STRANGER, ["sock1"], "Where is the Oslo office?")  # another reply, 👎 in a stranger's server
    assert build_training_data(core.settings, core.examples, core.store).undesirable == []
    core.generation.engine.reply = "The Oslo office is in Bergen."
    downvoted(HOME, ["mallory"], "Where exactly is the Oslo office?")  # a reply no one vouched for, at home
    [row] = build_training_data(core.settings, core.examples, core.store).undesirable
    assert row.completion == "The Oslo office is in Bergen."
