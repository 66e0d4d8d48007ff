"""The operator's HTTP endpoint: /metrics (Prometheus), /healthz (alive), /readyz (ready to serve).

Ready means every part the process needs is up: the model loaded, and each configured chat
platform connected. Kubernetes' readiness probe and the image's health check read /readyz.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

log = logging.getLogger(__name__)


class Readiness:
    """The parts still missing before the process is ready; thread-safe."""

    def __init__(self, needed: Iterable[str] = ()) -> None:
        self._missing = set(needed)
        self._lock = threading.Lock()

    def need(self, part: str) -> None:
        with self._lock:
            self._missing.add(part)

    def up(self, part: str) -> None:
        with self._lock:
            self._missing.discard(part)

    def down(self, part: str) -> None:
        """A part that was up is gone (a platform disconnected)."""
        self.need(part)

    def missing(self) -> list[str]:
        with self._lock:
            return sorted(self._missing)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes and scrapes every few seconds
        log.debug("%s " + format, self.address_string(), *args)


def wsgi_server(app: Callable[..., Any], host: str, port: int) -> WSGIServer:
    """A threaded WSGI server (port 0 picks a free one); also Slack's HTTP mode's (adapters/slack/http.py)."""
    return make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)


def in_background(server: WSGIServer, name: str) -> Callable[[], None]:
    """Serve on a daemon thread; returns what stops it."""
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


@dataclass
class Running:
    port: int
    stop: Callable[[], None]


def app(readiness: Readiness) -> Callable[..., Any]:
    metrics = make_wsgi_app()

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok")
        if path == "/readyz":
            missing = readiness.missing()
            if missing:
                return _text(start_response, "503 Service Unavailable", "waiting for: " + ", ".join(missing))
            return _text(start_response, "200 OK", "ready")
        return _text(start_response, "404 Not Found", "try /metrics, /healthz or /readyz")

    return route


def _text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    data = (body + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def serve(readiness: Readiness, port: int, host: str = "0.0.0.0") -> Running:
    """Serve the endpoints on a daemon thread; port 0 picks a free one."""
    server = wsgi_server(app(readiness), host, port)
    log.info("metrics and health on :%d (/metrics, /healthz, /readyz)", server.server_port)
    return Running(server.server_port, in_background(server, "health"))
