"""/metrics, /healthz and /readyz: scraped over HTTP while the bot answers, votes and swaps."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.ops.health import Readiness, serve
from bot.types import ConversationKey, Incoming, Reaction
from tests.fakes import FakeEngine

CONV = ConversationKey("slack", "C1", "t1")


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Readiness]]:
    readiness = Readiness(["model", "slack"])
    running = serve(readiness, port=0, host="127.0.0.1")
    yield f"http://127.0.0.1:{running.port}", readiness
    running.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(base + "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_ready_only_when_every_part_is_up(endpoint) -> None:
    base, readiness = endpoint
    assert get(base + "/healthz") == (200, "ok\n")
    assert get(base + "/readyz") == (503, "waiting for: model, slack\n")
    readiness.up("model")
    assert get(base + "/readyz") == (503, "waiting for: slack\n")
    readiness.up("slack")
    assert get(base + "/readyz") == (200, "ready\n")
    readiness.down("slack")  # a platform that disconnects makes the process unready again
    assert get(base + "/readyz")[0] == 503
    assert get(base + "/nope")[0] == 404


def test_metrics_are_scraped_while_the_bot_answers(endpoint, make_core) -> None:
    base, _ = endpoint
    hold = threading.Event()
    core = make_core(FakeEngine("Paris is the capital.", gate=hold), admins=("slack:ADMIN",))
    before = scrape(base)

    def ask(user: str) -> None:
        answering = core.handle(Incoming("slack", CONV, user, "capital of France?", mentions_bot=True))
        list(answering.events)  # type: ignore[union-attr]

    askers = [threading.Thread(target=ask, args=(f"U{n}",)) for n in range(3)]
    for asker in askers:
        asker.start()
    # One is being written (held), two wait: the queue gauge says so mid-answer.
    deadline = time.monotonic() + 10
    while scrape(base)[("bot_queue_length", ())] != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scrape(base)[("bot_queue_length", ())] == 2
    hold.set()
    for asker in askers:
        asker.join(timeout=10)
    after = scrape(base)

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    assert grew("bot_reply_seconds_count") == 3
    assert grew("bot_first_token_seconds_count") == 3
    assert grew("bot_queue_wait_seconds_count") == 3
    assert grew("bot_reply_tokens_total") == 3 * 4
    assert after[("bot_queue_length", ())] == 0

    exchange = core.store.exchanges()[0]
    core.link_message(exchange.id, "slack", "C1:1.0")
    core.handle(Reaction("slack", "C1:1.0", "U9", "+1", added=True))
    core.rules.correct("slack", "ADMIN", exchange.id, "Paris.", exchange.scope)
    after = scrape(base)
    assert grew("bot_votes_total", (("value", "up"),)) == 1
    assert grew("bot_corrections_total", (("status", "accepted"),)) == 1
    assert after[("bot_active_lora", (("version", ""),))] == 1, "the base model serves"
