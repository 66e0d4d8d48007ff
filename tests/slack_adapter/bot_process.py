"""The Slack bot on the fake engine in a process of its own, for tests that measure or kill it.

`python -m tests.slack_adapter.bot_process DATA_DIR SETTINGS_JSON` prints `ready URL` (URL: the
events endpoint in HTTP mode, else empty) once it serves, then serves until killed.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from adapters.slack.app import build_app, start_socket_mode
from adapters.slack.http import start_http
from bot.stores.examples import ExampleStore
from bot.wiring import assemble_core
from tests.conftest import test_settings
from tests.fakes import FakeEmbedder, FakeEngine
from tests.slack_adapter.helpers import REPLY


def main(data_dir: Path, overrides: dict[str, Any]) -> None:
    settings = test_settings(data_dir, **overrides)
    core = assemble_core(settings, FakeEngine(REPLY), ExampleStore(FakeEmbedder(), data_dir / "chroma"))
    app = build_app(core, settings)
    if settings.slack.mode == "http":
        running = start_http(app, settings, host="127.0.0.1", port=0)
    else:
        running = start_socket_mode(app, settings)
    print("ready", running.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]))
