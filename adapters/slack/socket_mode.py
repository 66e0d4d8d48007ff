"""Socket Mode, with readiness that follows the connection.

slack_sdk's client reconnects by itself (at once when Slack closes the websocket, else at its
next ping check), but says so to no one: its close listeners run after its own reconnect attempt
and it has no open listener. So a small watcher asks `is_connected()` every WATCH_S and tells
`readiness` (/readyz) when the connection goes and comes back.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler

from adapters.slack import PLATFORM
from adapters.slack.http import Running
from bot.ops.health import Readiness

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

# How often the client pings and checks its connection (reconnecting a dead one): slack_sdk's own
# default (bolt's handler doubles it), so a lost connection is noticed and retried within 5 s.
PING_INTERVAL_S = 5.0
WATCH_S = 0.5


def connect_socket_mode(app: App, settings: Settings, readiness: Readiness | None = None) -> Running:
    """Connect (apps.connections.open checks SLACK_APP_TOKEN; raises when it fails) and keep
    `readiness` in step with the connection until `stop()`."""
    handler = SocketModeHandler(app, settings.slack.app_token, ping_interval=PING_INTERVAL_S)
    handler.connect()
    ready = readiness or Readiness()
    client = handler.client
    stopped = threading.Event()

    def lost(code: int, reason: str | None) -> None:
        if not client.is_connected():  # the client's own reconnect failed: red at once
            ready.down(PLATFORM)

    def follow() -> None:
        up: bool | None = None
        while not stopped.wait(WATCH_S if up is not None else 0.0):
            now = client.is_connected()
            (ready.up if now else ready.down)(PLATFORM)  # every time: `lost` may have said otherwise
            if up is not None and now != up:
                log.warning("Slack Socket Mode %s", "reconnected" if now else "disconnected; reconnecting")
            up = now

    client.on_close_listeners.append(lost)
    threading.Thread(target=follow, name="slack-socket-watch", daemon=True).start()

    def stop() -> None:
        stopped.set()
        handler.close()

    return Running(stop=stop)
