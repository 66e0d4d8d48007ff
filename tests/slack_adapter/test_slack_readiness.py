"""/readyz follows the Socket Mode connection: red while it is down, green again once the client
has reconnected by itself."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from adapters.slack.app import build_app, start_socket_mode
from bot.core import Core
from bot.ops.health import Readiness, serve
from tests.emulators.slack_api import SlackEmulator
from tests.fakes import FakeEngine
from tests.slack_adapter.helpers import ALICE, DM, REPLY, final_reply, slack_overrides


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_readiness_is_red_while_disconnected_and_green_after_the_reconnect(
    slack: SlackEmulator, make_core: Callable[..., Core]
) -> None:
    core = make_core(FakeEngine(REPLY), **slack_overrides(slack))
    readiness = Readiness(["slack"])
    health = serve(readiness, 0, host="127.0.0.1")
    running = start_socket_mode(build_app(core, core.settings), core.settings, readiness)
    try:
        slack.wait_for(lambda: readyz(health.port) == 200, what="ready once connected")

        slack.drop_connections(refuse=True)  # Slack goes away and turns reconnects down
        slack.wait_for(lambda: readyz(health.port) == 503, what="/readyz to turn red")
        assert readiness.missing() == ["slack"]
        assert slack.stays(lambda: readyz(health.port) == 503, for_s=1.0), "red for as long as it is down"

        slack.accept_connections()
        slack.wait_for(lambda: readyz(health.port) == 200, timeout=30, what="/readyz green after the reconnect")
        slack.send_event(slack.user_message(DM, ALICE, "still there?", channel_type="im"))
        final_reply(slack, DM, REPLY)
    finally:
        running.stop()
        health.stop()
