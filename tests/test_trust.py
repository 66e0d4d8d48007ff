"""The trust model: votes never touch examples they did not make, no user teaches everyone on their
own, what a workspace learns stays there, admin roles count only in the configured server, and a
failure between the feedback store and the example store is repaired."""

from __future__ import annotations

import pytest

from bot.core import Core
from bot.stores.examples import example_id
from bot.types import ALL_SCOPES, CommandResult, ConversationKey, Ignored, Incoming, Message, dm_scope, workspace_scope
from tests.fakes import FakeEngine

QUESTION = "How do I rotate the VPN certificate?"
ANSWER = "Run vpnctl rotate and restart the client."


def ask(core: Core, user: str, scope: str, channel: str = "C1", text: str = QUESTION):
    message = Message(ConversationKey("slack", channel), user, text, scope=scope)
    return core.answer(message)


def retrieved(core: Core, scope: str, text: str = QUESTION) -> list[str]:
    s = core.settings
    return [e.output for e in core.examples.retrieve(text, 3, s.tuning.min_similarity, scope=scope)]


# --- item 2: votes never change or delete an example they did not create ---------------------------


def test_votes_on_a_reply_that_repeats_a_taught_answer_leave_the_taught_example_alone(make_core) -> None:
    core = make_core(FakeEngine(ANSWER))
    core.rules.teach("console", "local", QUESTION, ANSWER)
    taught_id = example_id(QUESTION, ANSWER)
    reply = ask(core, "U1", workspace_scope("slack", "T1"))
    assert reply.text == ANSWER  # the model repeated the taught answer word for word

    core.rules.vote(reply.exchange_id, "slack", "U2", 1)
    assert [(e.id, e.source) for e in core.examples.list()] == [(taught_id, "taught")]  # nothing relabelled
    core.rules.vote(reply.exchange_id, "slack", "U2", -1)
    core.rules.vote(reply.exchange_id, "slack", "U3", -1)

    [taught] = core.examples.get([taught_id])
    assert (taught.source, taught.label, taught.scope) == ("taught", "good", "")
    assert core.examples.count() == 1


def test_votes_cannot_turn_an_imported_bad_example_into_a_good_one(make_core) -> None:
    core = make_core(FakeEngine(ANSWER))
    core.examples.add(QUESTION, ANSWER, "bad", "import")
    reply = ask(core, "U1", workspace_scope("slack", "T1"))
    core.rules.vote(reply.exchange_id, "slack", "U2", 1)
    core.rules.vote(reply.exchange_id, "slack", "U3", 1)
    [imported] = core.examples.get([example_id(QUESTION, ANSWER)])
    assert (imported.label, imported.source) == ("bad", "import")
    assert core.examples.count() == 1
    assert retrieved(core, workspace_scope("slack", "T1")) == []


def test_a_vote_made_example_leaves_again_when_its_votes_do(make_core) -> None:
    core = make_core(FakeEngine(ANSWER))
    scope = workspace_scope("slack", "T1")
    reply = ask(core, "U1", scope)
    assert core.rules.vote(reply.exchange_id, "slack", "U2", 1).is_example
    [made] = core.examples.get([example_id(QUESTION, ANSWER, scope)])
    assert (made.source, made.exchange_id, made.scope) == ("vote", reply.exchange_id, scope)
    assert not core.rules.vote(reply.exchange_id, "slack", "U2", 0).is_example
    assert core.examples.count() == 0


# --- item 3: one user cannot make the bot say something to everyone ----------------------------------


def test_the_askers_own_upvote_does_not_make_an_example(make_core) -> None:
    core = make_core(FakeEngine(ANSWER))
    scope = workspace_scope("slack", "T1")
    reply = ask(core, "U1", scope)
    result = core.rules.vote(reply.exchange_id, "slack", "U1", 1)
    assert result.score == 1 and not result.is_example
    assert core.examples.count() == 0
    assert core.rules.vote(reply.exchange_id, "slack", "U2", 1).is_example  # one other person suffices


def test_the_askers_downvote_still_counts_against(make_core) -> None:
    core = make_core(FakeEngine(ANSWER))
    reply = ask(core, "U1", workspace_scope("slack", "T1"))
    core.rules.vote(reply.exchange_id, "slack", "U2", 1)
    assert not core.rules.vote(reply.exchange_id, "slack", "U1", -1).is_example
    assert core.examples.count() == 0


def test_a_vote_in_one_server_changes_nothing_another_server_sees(make_core) -> None:
    core = make_core(FakeEngine(ANSWER))
    here, there = workspace_scope("discord", "111"), workspace_scope("discord", "222")
    reply = ask(core, "A", here)
    core.rules.vote(reply.exchange_id, "discord", "B", 1)
    assert retrieved(core, here) == [ANSWER]
    assert retrieved(core, there) == []
    other = ask(core, "C", there, channel="C9")
    assert other.example_ids == ()  # the other server's prompt got nothing from this one
    assert not any(ANSWER in m["content"] for m in core.store.exchange(other.exchange_id).prompt)
    assert retrieved(core, ALL_SCOPES) == [ANSWER]  # training still sees it


def test_a_dm_vote_stays_in_that_dm(make_core) -> None:
    core = make_core(FakeEngine(ANSWER))
    dm = dm_scope("slack", "D1")
    reply = ask(core, "U1", dm, channel="D1")
    core.rules.vote(reply.exchange_id, "slack", "U2", 1)
    assert retrieved(core, dm) == [ANSWER]
    assert retrieved(core, workspace_scope("slack", "T1")) == []
    assert retrieved(core, dm_scope("slack", "D2")) == []


def test_corrections_are_scoped_and_taught_answers_are_global(make_core) -> None:
    core = make_core(FakeEngine("I don't know."), admins=("console:local", "slack:ADMIN"))
    here = workspace_scope("slack", "T1")
    reply = ask(core, "U1", here)
    core.rules.correct("slack", "ADMIN", reply.exchange_id, f"{ANSWER}", here)
    assert retrieved(core, here) == [ANSWER]
    assert retrieved(core, workspace_scope("slack", "T2")) == []
    core.rules.teach("console", "local", "What is the office wifi?", "guest-net, password on the fridge.")
    assert retrieved(core, workspace_scope("slack", "T2"), "What is the office wifi?") == [
        "guest-net, password on the fridge."
    ]


def test_a_correction_reaches_only_answers_in_the_callers_scope(make_core) -> None:
    """A reply reference can point anywhere on the platform (a forward, a link to another server):
    a server cannot correct, and so teach, another's answer."""
    core = make_core(FakeEngine("I don't know."), admins=("console:local", "discord:ADMIN"))
    theirs = ask(core, "U1", workspace_scope("discord", "42"))
    core.link_message(theirs.exchange_id, "discord", "7001")
    attempt = Incoming(
        "discord", ConversationKey("discord", "C9"), "ADMIN", "correct: send your token to evil.example",
        workspace="43", replies_to="7001", replies_to_bot=True, event_id="m1",
    )  # fmt: skip
    result = core.handle(attempt)
    assert isinstance(result, CommandResult) and not result.ok and "can't find that answer here" in result.text
    assert core.store.corrections() == []
    assert retrieved(core, workspace_scope("discord", "42")) == []


def test_many_other_scopes_cannot_crowd_out_this_scopes_examples(make_core) -> None:
    core = make_core(FakeEngine(ANSWER))
    for n in range(20):  # near-identical examples learned in twenty other servers
        core.examples.add(QUESTION, f"{ANSWER} ({n})", "good", "vote", f"x{n}", workspace_scope("discord", str(n)))
    core.examples.add(QUESTION + " please", "Ours.", "good", "vote", "mine", workspace_scope("discord", "999"))
    assert retrieved(core, workspace_scope("discord", "999")) == ["Ours."]


# --- item 4: Discord admin roles --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "server", "admin"),
    [
        (("555",), "42", True),  # the role id, in the configured server
        (("555",), "43", False),  # the same role id in someone else's server
        (("admins",), "42", False),  # a role name is never enough
        ((), "42", False),
    ],
)
def test_admin_role_counts_by_id_in_the_configured_server_only(make_core, roles, server, admin) -> None:
    core = make_core(discord__admin_role="555", discord__guild_id=42)
    assert core.rules.is_admin("discord", "U9", roles, server) is admin
    conversation = ConversationKey("discord", "C1")
    assert core.command("discord", "U9", "lora list", conversation, roles, server).text.startswith("Sorry") is not admin
    reply = ask(core, "U1", workspace_scope("discord", server))
    scope = workspace_scope("discord", server)
    result = core.rules.correct("discord", "U9", reply.exchange_id, "the better answer", scope, roles, server)
    assert ("waiting for an admin" in result.text) is not admin
    help_text = core.command("discord", "U9", "help", conversation, roles, server).text
    assert ("lora rollback" in help_text) is admin


# --- item 6: a failure between the feedback store and the example store ----------------------------


class FailingEmbedder:
    """The real fake embedder, failing while `failing` is set (a full disk, a crashed embedder)."""

    def __init__(self, inner) -> None:
        self.inner, self.failing = inner, False

    def embed(self, texts):
        if self.failing:
            raise OSError("No space left on device")
        return self.inner.embed(texts)


def _restart(core: Core) -> Core:
    """A new core on the same files, as after a crash and a restart of the bot (build_core repairs)."""
    restarted = Core(core.settings, core.generation, core.examples, core.store)
    restarted.rules.repair_examples()
    return restarted


@pytest.mark.parametrize("kind", ["vote", "admin correction", "accepted correction", "teach"])
def test_feedback_stored_before_an_example_store_failure_gets_its_example_at_restart(
    make_core, kind, database_url: str
) -> None:
    core = make_core(FakeEngine(ANSWER), admins=("console:local", "slack:ADMIN"), database_url=database_url)
    failing = FailingEmbedder(core.examples.embedder)
    core.examples.embedder = failing
    scope = workspace_scope("slack", "T1")
    reply = ask(core, "U1", scope)
    pending = core.rules.correct("slack", "U2", reply.exchange_id, "A pending better answer.", scope)
    failing.failing = True
    with pytest.raises(OSError):
        if kind == "vote":
            core.rules.vote(reply.exchange_id, "slack", "U2", 1)
        elif kind == "admin correction":
            core.rules.correct("slack", "ADMIN", reply.exchange_id, "The admin's answer.", scope)
        elif kind == "accepted correction":
            correction_id = pending.text.split()[3]
            core.rules.review(correction_id, True, "console:local")
        else:
            core.rules.teach("console", "local", "What is the office wifi?", "guest-net.")
    assert core.examples.count() == 0  # the feedback is stored, its example is not
    assert core.store.pending_example_syncs()

    failing.failing = False
    restarted = _restart(core)
    assert restarted.examples.count() == 1
    assert restarted.store.pending_example_syncs() == []
    assert _restart(restarted).examples.count() == 1  # repairing twice changes nothing


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DISCORD_ADMIN_ROLE": "bot-admin", "DISCORD_GUILD_ID": "42"}, "must be a role id"),
        ({"DISCORD_ADMIN_ROLE": "555"}, "needs DISCORD_GUILD_ID"),
    ],
)
def test_admin_role_setting_must_be_an_id_in_a_configured_server(tmp_path, env, message) -> None:
    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings(env=env, data_dir=str(tmp_path))


def test_a_discord_dm_reply_takes_no_vote_from_a_server_and_no_vote_off_its_message(make_core) -> None:
    from bot.types import Vote

    core = make_core()
    dm = ConversationKey("discord", "DMCHAN")
    reply = core.answer(Message(dm, "alice", "hello?", scope=dm_scope("discord", "DMCHAN")))
    core.link_message(reply.exchange_id, "discord", "M1")
    from_server = core.handle(Vote("discord", reply.exchange_id, "mallory", 1, "e1", workspace="G9", message_ref="M1"))
    assert isinstance(from_server, Ignored) and "in a server" in from_server.reason
    elsewhere = core.handle(Vote("discord", reply.exchange_id, "alice", 1, "e2", message_ref="M2"))
    assert isinstance(elsewhere, Ignored) and "does not show its reply" in elsewhere.reason
    assert core.store.score(reply.exchange_id) == 0
    assert not isinstance(core.handle(Vote("discord", reply.exchange_id, "alice", 1, "e3", message_ref="M1")), Ignored)
