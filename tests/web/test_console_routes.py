"""The console's routes: every page and action refused signed out, without its CSRF token, and to a
signed-in user who is not an admin; the sign-in's secret, one-time link, cookie and rate limit; what
each action changes, through the same commands and rules as chat; hostile text shown as text."""

from __future__ import annotations

import io
import json
import re

import pytest
from starlette.testclient import TestClient

from bot.core import Core
from bot.types import ConversationKey, Message, Vote
from bot.web.app import create_app
from bot.web.auth import ATTEMPTS
from tests.conftest import MakeCore
from tests.web.helpers import HOSTILE, csrf_of, signed_in_client

SECRET = "console-secret-0123456789"
PAGES = ["/", "/exchanges", "/exchanges/{exchange}", "/review", "/examples", "/training", "/training/status"]
ACTIONS = [
    "/exchanges/{exchange}/correct",
    "/exchanges/{exchange}/example",
    "/review/{correction}/accept",
    "/review/{correction}/reject",
    "/review/{correction}/edit",
    "/examples/teach",
    "/examples/import",
    "/examples/{example}/remove",
    "/training/retrain",
    "/training/use",
    "/training/rollback",
    "/signout",
]


@pytest.fixture
def core(make_core: MakeCore) -> Core:
    core = make_core(admins=("console:local", "web:alice", "web:owner"), web__token=SECRET)
    core.rules.teach("console", "local", "Where is the office?", "On Main Street.")
    return core


def asked(core: Core, text: str = "Where is the office?", user: str = "U1") -> str:
    """An exchange in a Slack workspace, as the adapter would store it."""
    reply = core.answer(Message(ConversationKey("slack", "C1", "t1"), user, text, scope="slack:T1"))
    return reply.exchange_id


def pending_correction(core: Core, exchange: str) -> str:
    result = core.rules.correct("slack", "UBOB", exchange, "It is on Elm Street.", "slack:T1")
    return re.search(r"correction (\w+)", result.text).group(1)  # type: ignore[union-attr]


def filled(path: str, core: Core, exchange: str, correction: str = "c0ffee00") -> str:
    example = core.examples.list()[0].id
    return path.format(exchange=exchange, correction=correction, example=example)


def test_signed_out_every_page_and_action_sends_to_sign_in(core: Core) -> None:
    client = TestClient(create_app(core), follow_redirects=False)
    exchange = asked(core)
    before = (core.store.corrections(), core.examples.count())
    for path in PAGES:
        response = client.get(filled(path, core, exchange))
        assert response.status_code == 303 and response.headers["location"].startswith("/signin"), path
    for path in ACTIONS[:-1]:
        response = client.post(filled(path, core, exchange), data={"csrf": "x"})
        assert response.status_code == 303 and response.headers["location"].startswith("/signin"), path
    assert (core.store.corrections(), core.examples.count()) == before, "nothing changed"


def test_an_action_without_its_csrf_token_is_refused(core: Core) -> None:
    client = signed_in_client(core)
    exchange = asked(core)
    correction = pending_correction(core, exchange)
    for path in ACTIONS:
        for data in ({}, {"csrf": "forged"}):
            response = client.post(filled(path, core, exchange, correction), data={**data, "answer": "x"})
            assert response.status_code == 403 and "CSRF" in response.text, path
    assert [c.status for c in core.store.corrections() if c.exchange_id] == ["pending"] and core.examples.count() == 1


def test_a_signed_in_user_who_is_no_admin_is_refused_everywhere(core: Core) -> None:
    client = TestClient(create_app(core), follow_redirects=False)
    signed = client.post("/signin", data={"token": SECRET, "name": "mallory"})
    assert signed.status_code == 303
    exchange = asked(core)
    for path in PAGES:
        assert client.get(filled(path, core, exchange)).status_code == 403, path
    for path in ACTIONS[:-1]:
        response = client.post(filled(path, core, exchange), data={"csrf": "x", "answer": "x"})
        assert response.status_code == 403 and "web:mallory is not an admin" in response.text, path


def test_sign_in_by_secret_as_a_listed_admin_and_the_cookie_it_sets(core: Core) -> None:
    client = TestClient(create_app(core), follow_redirects=False)
    response = client.post("/signin", data={"token": SECRET, "name": "alice", "next": "//evil.example/"})
    assert response.status_code == 303 and response.headers["location"] == "/", "no redirect off the site"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=28800" in cookie
    sneaky = client.post("/signin", data={"token": SECRET, "name": "alice", "next": "/\\evil.example/"})
    assert sneaky.headers["location"] == "/", "a browser reads /\\host as //host"
    page = client.get("/")
    assert page.status_code == 200 and "web:alice" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer", "a one-time link never leaves in a Referer"
    assert SECRET not in page.text and SECRET not in client.get("/training").text, "no secret in a page"


def test_failed_sign_ins_are_limited_and_a_one_time_link_works_once(core: Core) -> None:
    app = create_app(core)
    client = TestClient(app, follow_redirects=False)
    for _ in range(ATTEMPTS):
        assert "Wrong secret" in client.post("/signin", data={"token": "guess", "name": "x"}).text
    assert client.post("/signin", data={"token": SECRET, "name": "alice"}).status_code == 429, "even the right one"
    links_client = signed_in_client(core)  # a link signs in once
    assert links_client.get("/").status_code == 200


def test_a_one_time_link_cannot_be_used_twice(core: Core) -> None:
    from bot.web.auth import OneTimeLinks

    links = OneTimeLinks()
    token = links.issue("owner")
    client = TestClient(create_app(core, links=links), follow_redirects=False)
    assert client.get(f"/signin/{token}").status_code == 303
    other = TestClient(create_app(core, links=links), follow_redirects=False)
    assert "used or has expired" in other.get(f"/signin/{token}").text


def test_hostile_text_shows_as_text_on_every_page(core: Core) -> None:
    exchange = asked(core, HOSTILE)
    core.rules.teach("console", "local", HOSTILE[:200], HOSTILE[:300])
    pending_correction(core, exchange)
    client = signed_in_client(core)
    for path in ("/exchanges", f"/exchanges/{exchange}", "/review", "/examples", "/exchanges?q=%3Cscript%3E"):
        page = client.get(path).text
        assert "<script>alert" not in page and "<b>bold</b>" not in page, path
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in client.get(f"/exchanges/{exchange}").text


def test_exchanges_filter_by_vote_text_and_workspace(core: Core) -> None:
    liked, disliked, other = asked(core, "first question"), asked(core, "second question"), asked(core, "third one")
    core.handle(Vote("slack", liked, "U2", 1, "e1", "T1"))
    core.handle(Vote("slack", disliked, "U2", -1, "e2", "T1", reason="wrong"))
    client = signed_in_client(core)

    def listed(query: str) -> set[str]:
        return set(re.findall(r'href="/exchanges/(\w+)"', client.get(f"/exchanges?{query}").text))

    assert listed("vote=down") == {disliked} and listed("vote=up") == {liked}
    assert listed("vote=none") == {other} and listed("q=THIRD") == {other}
    assert listed("workspace=slack:T1") == {liked, disliked, other} and listed("workspace=slack:T2") == set()
    detail = client.get(f"/exchanges/{disliked}").text
    assert "wrong" in detail and "👎" in detail, "the vote and its reason"


def test_a_correction_from_the_console_is_an_admins_and_shows_as_a_diff(core: Core) -> None:
    exchange = asked(core)
    client = signed_in_client(core)
    response = client.post(f"/exchanges/{exchange}/correct", data={"csrf": csrf_of(client), "answer": "On Elm Street."})
    assert response.status_code == 303
    [correction] = [c for c in core.store.corrections() if c.exchange_id]
    assert (correction.status, correction.platform, correction.user_id) == ("accepted", "web", "owner")
    assert any(e.output == "On Elm Street." and e.scope == "slack:T1" for e in core.examples.list())
    page = client.get(f"/exchanges/{exchange}").text
    assert '<span class="added">On Elm Street.</span>' in page and "learned" in page


def test_the_review_queue_accepts_rejects_and_edits(core: Core) -> None:
    exchange = asked(core)
    first, second, third = (pending_correction(core, exchange) for _ in range(3))
    client = signed_in_client(core)
    token = csrf_of(client, "/review")
    client.post(f"/review/{first}/accept", data={"csrf": token})
    client.post(f"/review/{second}/reject", data={"csrf": token})
    client.post(f"/review/{third}/edit", data={"csrf": token, "answer": "On Elm Street, third floor."})
    statuses = {c.id: c.status for c in core.store.corrections()}
    assert statuses[first] == "accepted" and statuses[second] == "rejected" and statuses[third] == "rejected"
    edited = [c for c in core.store.corrections() if c.answer == "On Elm Street, third floor."]
    assert edited and edited[0].status == "accepted" and edited[0].user_id == "owner"
    assert "No corrections are waiting" in client.get("/review").text


def test_examples_teach_several_phrasings_remove_and_import(core: Core) -> None:
    client = signed_in_client(core)
    token = csrf_of(client, "/examples")
    client.post("/examples/teach", data={"csrf": token, "questions": "When do you open?\nOpening hours?",
                                         "answer": "At nine."})  # fmt: skip
    taught = [e for e in core.examples.list() if e.output == "At nine."]
    assert {e.input for e in taught} == {"When do you open?", "Opening hours?"}
    client.post(f"/examples/{taught[0].id}/remove", data={"csrf": token})
    assert len([e for e in core.examples.list() if e.output == "At nine."]) == 1

    bad = b'{"input": "a", "output": "b"}\nnot json\n{"input": "c"}\n'
    started = client.post("/examples/import", data={"csrf": token}, files={"file": ("bad.jsonl", io.BytesIO(bad))})
    page = _finished_import(client, started.headers["location"])
    assert "Nothing was imported" in page and "line 2" in page and "line 3" in page
    good = "".join(json.dumps({"input": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(40)).encode()
    started = client.post("/examples/import", data={"csrf": token}, files={"file": ("good.jsonl", io.BytesIO(good))})
    assert "Imported 40 example(s)" in _finished_import(client, started.headers["location"])
    assert sum(e.source == "import:good.jsonl" for e in core.examples.list()) == 40


def test_beside_a_running_bot_the_examples_are_shown_not_changed(core: Core) -> None:
    client = signed_in_client(core, owns_examples=False)
    exchange = asked(core)
    before = core.examples.count()
    client.post("/examples/teach", data={"csrf": csrf_of(client), "questions": "Q?", "answer": "A."})
    client.post(f"/exchanges/{exchange}/correct", data={"csrf": csrf_of(client), "answer": "B."})
    assert core.examples.count() == before and not [c for c in core.store.corrections() if c.exchange_id]
    assert "serve the console" in client.get("/examples").text


def _finished_import(client: TestClient, location: str) -> str:
    import time

    for _ in range(100):
        page = client.get(location).text
        if 'http-equiv="refresh"' not in page:
            return page
        time.sleep(0.05)
    raise AssertionError("the import did not finish")


def test_what_changed_lists_differing_held_out_replies_and_regression_questions_lost_or_won() -> None:
    from bot.types import LoraVersion
    from bot.web.learning import changed

    def replies(*pairs: tuple[str, str]) -> list[dict[str, object]]:
        return [{"question": q, "reference": "r", "reply": a, "recall": 1.0 if a == "r" else 0.0} for q, a in pairs]

    manifest = {"eval": {
        "baseline": {"heldout_replies": replies(("q1", "r"), ("q2", "same")),
                     "regression_misses": [{"question": "won", "reply": "wrong", "expected": ["x"]}]},
        "candidate": {"heldout_replies": replies(("q1", "other"), ("q2", "same")),
                      "regression_misses": [{"question": "lost", "reply": "bad", "expected": ["y"]}]},
    }}  # fmt: skip
    rows = changed(LoraVersion("v0002", "/nowhere", 0.0, "candidate", manifest))
    assert [(r["set"], r["question"], r["before"], r["after"], r["verdict"]) for r in rows] == [
        ("held-out", "q1", "r", "other", "recall 1.00 → 0.00"),
        ("regression", "lost", "", "bad", "now missed"),
        ("regression", "won", "wrong", "", "now right"),
    ]


def test_bot_run_serves_the_console_beside_the_bot_only_with_a_secret(make_core: MakeCore, caplog) -> None:
    import socket
    import time
    import urllib.request

    from bot.cli.web import serve_beside_bot

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    without = make_core(web__port=port)
    serve_beside_bot(without, without.settings)
    assert "BOT_WEB_TOKEN is not" in caplog.text, "no secret: nobody could sign in, so nothing is served"
    core = make_core(web__port=port, web__token=SECRET)
    serve_beside_bot(core, core.settings)
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/signin", timeout=2) as page:
                assert page.status == 200 and "BOT_WEB_TOKEN" in page.read().decode()
                break
        except OSError:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.1)
