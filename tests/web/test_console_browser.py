"""The console in a real browser (Debian's Chromium through Selenium and ChromeDriver), served by
uvicorn over loopback, on the real default model (llama.cpp): sign in by the one-time link, find an
exchange with a 👎 and open it, write a correction, accept a pending one in the review queue with
the keyboard, see a message holding `<script>` as text, start a tiny retrain, see its gate result
and what changed, roll it back and serve it again. A screenshot of each page goes to
tests/output/console/ (CI keeps it; docs/console/ holds the README's copies)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core import Core
from bot.types import ConversationKey, Message, Vote
from bot.web.app import create_app
from bot.web.auth import OneTimeLinks
from tests.conftest import REPO
from tests.test_learning_loop import TINY
from tests.web.helpers import HOSTILE

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("serving_engine", ["llama.cpp"], indirect=True)]
SHOTS = REPO / "tests" / "output" / "console"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FACTS = [
    ("What is the name of the office cat?", "The office cat is called Biscuit."),
    ("What is the wifi password in the lab?", "The lab wifi password is Quokka-4711."),
    ("Who fixes the coffee machine?", "Dana from facilities fixes the coffee machine."),
    ("When is the team lunch?", "The team lunch is on Thursdays at noon."),
]


def require_browser() -> None:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        reason = "Debian's chromium and chromium-driver are not installed (deploy/stand-ins/install-chromium.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run this test")
        pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[object]:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def serve(core: Core, links: OneTimeLinks) -> tuple[str, object]:
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(core, True, links), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def test_an_admin_works_through_the_console_in_a_real_browser(make_real_core, browser) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.ui import Select, WebDriverWait

    # A tiny run: what it learns is not judged here, only that the console shows and acts on it.
    tiny = {**TINY, "tuning__holdout_fraction": 0.5, "training__epochs": 2}
    core = make_real_core(admins=("console:local", "web:owner"), **tiny)
    for question, answer in FACTS:
        core.rules.teach("console", "local", question, answer)
    slack = ConversationKey("slack", "C1", "t1")
    disliked = core.answer(Message(slack, "U1", "Who fixes the coffee machine?", scope="slack:T1")).exchange_id
    core.handle(Vote("slack", disliked, "U2", -1, "e1", "T1", reason="wrong"))
    hostile = core.answer(Message(ConversationKey("slack", "C1", "t2"), "U3", HOSTILE, scope="slack:T1")).exchange_id
    proposed = core.answer(Message(ConversationKey("slack", "C1", "t3"), "U4", "When is lunch?", scope="slack:T1"))
    core.rules.correct("slack", "UBOB", proposed.exchange_id, "Lunch is on Thursdays at noon.", "slack:T1")
    links = OneTimeLinks()
    base, server = serve(core, links)
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)

    def shot(name: str) -> None:
        browser.save_screenshot(str(SHOTS / f"{name}.png"))

    def navigate(element: object) -> None:
        """Click something that loads a page, and wait for the new one."""
        old = browser.find_element(By.TAG_NAME, "html")
        element.click()
        WebDriverWait(browser, 120).until(staleness_of(old))

    def flash() -> str:
        return " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".flash"))

    try:
        browser.get(f"{base}/signin")
        shot("signin")
        browser.get(f"{base}/signin/{links.issue('owner')}")
        assert "web:owner" in browser.find_element(By.TAG_NAME, "header").text
        shot("overview")

        # Find the exchange with a 👎 and open it.
        navigate(browser.find_element(By.LINK_TEXT, "Exchanges"))
        Select(browser.find_element(By.NAME, "vote")).select_by_visible_text("👎 down")
        navigate(browser.find_element(By.CSS_SELECTOR, "#filters button"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#exchanges a")
        assert len(rows) == 1, browser.page_source
        shot("exchanges")
        navigate(rows[0])
        assert browser.current_url.endswith(f"/exchanges/{disliked}")
        assert "Who fixes the coffee machine?" in browser.find_element(By.ID, "question").text
        assert "wrong" in browser.page_source, "the 👎 and its reason"
        browser.find_element(By.CSS_SELECTOR, "#correct textarea").send_keys("Sam from facilities fixes it now.")
        navigate(browser.find_element(By.CSS_SELECTOR, "#correct button"))
        assert "learned" in flash(), flash()
        added = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".diff .added"))
        removed = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".diff .removed"))
        assert "Sam" in added and "it now." in added and removed, (added, removed)
        shot("exchange")
        assert any(e.output == "Sam from facilities fixes it now." for e in core.examples.list())

        # A message holding <script> shows as text, and runs nothing.
        browser.get(f"{base}/exchanges/{hostile}")
        assert "<script>alert('x')</script>" in browser.find_element(By.ID, "question").text
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        shot("hostile")

        # The review queue, with the keyboard: `a` accepts the current correction.
        navigate(browser.find_element(By.LINK_TEXT, "Review"))
        assert "Lunch is on Thursdays at noon." in browser.page_source
        shot("review")
        browser.find_element(By.TAG_NAME, "body").send_keys("a")
        deadline = time.monotonic() + 10
        while "Accepted" not in flash():
            assert time.monotonic() < deadline, browser.page_source
            time.sleep(0.1)
        assert [c.status for c in core.store.corrections() if c.user_id == "UBOB"] == ["accepted"]

        navigate(browser.find_element(By.LINK_TEXT, "Examples"))
        assert "Biscuit" in browser.page_source
        shot("examples")

        # A tiny retrain on the real model, followed live; its gate result and what changed.
        navigate(browser.find_element(By.LINK_TEXT, "Training"))
        navigate(browser.find_element(By.XPATH, "//button[text()='Start a retrain']"))
        assert "started" in flash().lower() or "training" in flash().lower(), flash()
        shot("training-running")
        deadline = time.monotonic() + 1500
        while not core.registry.versions():
            assert time.monotonic() < deadline, "the retrain did not finish"
            time.sleep(2)
        while core.trainer.running():
            time.sleep(1)
        browser.get(f"{base}/training")
        version = core.registry.versions()[-1]
        assert version.version in browser.find_element(By.ID, "versions").text
        shot("training")
        navigate(browser.find_element(By.LINK_TEXT, version.version))
        assert version.manifest["reason"] in browser.find_element(By.ID, "gate").text
        changed = browser.find_element(By.ID, "changed").text
        gate = version.manifest["eval"]
        lost = {m["question"] for m in gate["candidate"]["regression_misses"]} ^ {
            m["question"] for m in gate["baseline"]["regression_misses"]
        }
        assert all(question in changed for question in lost), changed  # what a retrain changed, side by side
        shot("version")
        assert core.registry.active() is not None and core.registry.active().version == version.version

        # Roll it back, then serve it again, from the same pages.
        navigate(browser.find_element(By.XPATH, "//button[text()='Roll back']"))
        assert core.registry.active() is None, flash()
        browser.get(f"{base}/versions/{version.version}")
        navigate(browser.find_element(By.XPATH, "//button[text()='Serve it']"))
        assert core.registry.active().version == version.version, flash()
        assert version.version in flash()
        shot("training-served-again")
    finally:
        server.should_exit = True
