"""The example store's client sends `chroma_token` to a chromadb server behind a token check.

chromadb 1.x's server (`chroma run`, the official image: Rust) has no authentication of its own; it
ignores CHROMA_SERVER_AUTHN_*. deploy/k8s/chroma.yaml therefore puts a proxy in the pod that admits
only `Authorization: Bearer <token>`. This test puts the same check (a small proxy on loopback) in
front of a real `chroma run` and drives the bot's own client through it.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.config import Settings
from bot.stores.opening import build_examples
from tests.fakes import FakeEmbedder

TOKEN = "0123abcd"


@pytest.fixture
def guarded_chroma(chroma_server: str) -> Iterator[str]:
    """The URL of a proxy that forwards to `chroma run` only requests bearing TOKEN (as the pod's does)."""
    upstream = urlsplit(chroma_server)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, b'{"error":"Unauthorized"}', "application/json")
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            self._send(response.status, response.read(), response.getheader("Content-Type", "application/json"))
            connection.close()

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_example_store_reaches_a_guarded_server_with_the_token_only(guarded_chroma: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, chroma_url=guarded_chroma, chroma_token=TOKEN)
    store = build_examples(settings, FakeEmbedder())  # the path the bot and the trainer take
    before = store.count()
    store.add("How do I reset my password?", "Use the reset link.", "good", "import")
    assert store.count() == before + 1
    with pytest.raises(Exception, match=r"(?i)unauthori[sz]ed|401"):
        build_examples(settings.model_copy(update={"chroma_token": ""}), FakeEmbedder())
