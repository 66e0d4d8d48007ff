"""Slack's HTTP mode: bolt's WSGI adapter behind a guard, on a threaded wsgiref server.

Bolt's adapter reads a whole body, whatever its size, before it checks the signature, and
wsgiref waits on a slow client for as long as the client likes: anyone who can reach the port
could hold the bot's memory or its threads. So a body over MAX_BODY is refused (413) before a
byte of it is read, each request must arrive within REQUEST_TIMEOUT_S, at most MAX_REQUESTS are
served at once (one more gets 503, unread), and a failure is answered
with a plain status line (the traceback goes to the log only). A small WSGI middleware and a
handler class do it: wsgiref has no such options, and the rest of the bot serves on wsgiref
(bot/ops/health.py), so no other server is needed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.ops.health import in_background

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
MAX_BODY = 1 << 20  # 1 MiB: Slack's own payloads are a few KiB
REQUEST_TIMEOUT_S = 5.0  # for the request line, headers and body together; Slack sends at once
MAX_REQUESTS = 32  # requests served at once (Slack retries a 503 later)
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _DeadlineReads(io.RawIOBase):
    """A connection's reads, each allowed only what is left of the request's time: a client
    trickling a byte now and then can't hold a thread either."""

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        self._sock, self._deadline = sock, time.monotonic() + timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long to arrive")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Handler(WSGIRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.rfile = io.BufferedReader(_DeadlineReads(self.connection, REQUEST_TIMEOUT_S))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingMixIn, WSGIServer):
    """One thread a request, MAX_REQUESTS at most: one more is answered 503 at once, unread, so
    that no crowd of connections can hold more threads or memory (MAX_BODY each) than that."""

    daemon_threads = True
    request_queue_size = 2 * MAX_REQUESTS  # the listen backlog: a burst of Slack's requests waits, not dropped

    def server_activate(self) -> None:
        super().server_activate()
        self.slots = threading.BoundedSemaphore(MAX_REQUESTS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: give the slot back here
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # a client that stalled or hung up: one line, no traceback
            log.info("Slack HTTP: dropped a request from %s: %s", client_address[0], error or "timed out")
        else:
            log.exception("Slack HTTP: a request from %s failed", client_address[0])


def _plain(start_response: Callable[..., Any], status: str) -> list[bytes]:
    body = (status + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def guarded(app: WsgiApp, max_body: int = MAX_BODY) -> WsgiApp:
    """`app`, handed only bodies it may read: at most `max_body` bytes, read in full here."""

    def guard(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return _plain(start_response, "400 Bad Request")
        if environ.get("HTTP_TRANSFER_ENCODING"):  # wsgiref can't decode chunks; Slack sends a length
            return _plain(start_response, "411 Length Required")
        if length > max_body:  # refused unread: the client may still be sending it
            return _plain(start_response, "413 Content Too Large")
        try:
            body = environ["wsgi.input"].read(length) if length else b""
        except OSError:  # TimeoutError included: the deadline passed
            return _plain(start_response, "408 Request Timeout")
        if len(body) < length:
            return _plain(start_response, "400 Bad Request")
        try:
            return app({**environ, "wsgi.input": io.BytesIO(body)}, start_response)
        except ValueError as exc:  # bolt parses the body before it checks the signature
            log.info("Slack HTTP: an unreadable body from %s: %s", environ.get("REMOTE_ADDR"), exc)
            return _plain(start_response, "400 Bad Request")
        except Exception:
            log.exception("Slack HTTP: a request failed")
            return _plain(start_response, "500 Internal Server Error")

    return guard


def http_server(app: App, host: str, port: int) -> WSGIServer:
    """Serve `app` at EVENTS_PATH on `host:port` (port 0 picks a free one); call serve_forever()."""
    return make_server(host, port, guarded(SlackRequestHandler(app, EVENTS_PATH)), _Server, _Handler)


@dataclass
class Running:
    """A started Slack app: `stop()` ends it; `url` is the events endpoint in HTTP mode."""

    stop: Callable[[], None]
    url: str = ""


def start_http(app: App, settings: Settings, host: str = "0.0.0.0", port: int | None = None) -> Running:
    """Serve Slack's signed requests on `port` (default settings.slack.port; 0 picks a free one) without blocking."""
    server = http_server(app, host, settings.slack.port if port is None else port)
    stop = in_background(server, "slack-http")
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    return Running(stop=stop, url=f"http://{shown}:{server.server_port}{EVENTS_PATH}")
