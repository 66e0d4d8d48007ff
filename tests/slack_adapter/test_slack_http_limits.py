"""Slack's HTTP mode under abuse: an oversized body, a client that stalls, a replayed command."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from adapters.slack.http import MAX_REQUESTS, REQUEST_TIMEOUT_S
from bot.core import Core
from tests.emulators.slack_api import SlackEmulator
from tests.slack_adapter.conftest import BotProcess
from tests.slack_adapter.helpers import ADMIN, CHANNEL

MIB = 1 << 20


def _connect(url: str) -> tuple[socket.socket, str]:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "", parts.port or 80), timeout=30), parts.path


def _head(path: str, length: int) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    return (head + "\r\n").encode()


def _read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (a reset after its answer counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _post(url: str, body_size: int) -> bytes:
    """POST an unsigned JSON body of `body_size` bytes (`{}` and spaces), reading the answer while sending."""
    sock, path = _connect(url)

    def send() -> None:
        chunk = b"{}" + b" " * (MIB - 2)
        try:
            sock.sendall(_head(path, body_size))
            for offset in range(0, body_size, MIB):
                sock.sendall(chunk[: body_size - offset])
                chunk = b" " * MIB
        except OSError:
            pass  # the server stopped reading: it answered already

    sender = threading.Thread(target=send)
    sender.start()
    with sock:
        answer = _read_all(sock)
    sender.join()
    return answer


def test_a_50_mb_unsigned_post_is_refused_unread(bot_process: Callable[..., BotProcess]) -> None:
    bot = bot_process(slack__mode="http")
    assert _post(bot.url, 100).split()[1] == b"401", "a small unsigned body is read and refused by bolt"
    before = bot.rss_peak_kib()
    assert _post(bot.url, 50 * MIB).split()[1] == b"413"
    grown_mib = (bot.rss_peak_kib() - before) / 1024
    assert grown_mib < 5, f"peak memory grew {grown_mib:.0f} MiB: the body was read"


def test_a_client_that_stalls_mid_body_is_cut_off(http_bot: tuple[Core, str]) -> None:
    _, url = http_bot
    sock, path = _connect(url)
    with sock:
        sock.sendall(_head(path, 1000) + b"{" * 100)  # then nothing more
        start = time.monotonic()
        answer = _read_all(sock)
    assert time.monotonic() - start < REQUEST_TIMEOUT_S + 1.5
    assert answer.split()[1] == b"408"


def test_a_client_trickling_its_headers_is_cut_off_at_the_deadline(http_bot: tuple[Core, str]) -> None:
    """Each byte comes well within any per-read timeout; the request as a whole does not."""
    _, url = http_bot
    sock, path = _connect(url)
    stop = threading.Event()

    def trickle() -> None:
        for byte in _head(path, 2):  # about 100 bytes, 25 s at this pace
            if stop.wait(0.25):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    sender = threading.Thread(target=trickle)
    start = time.monotonic()
    sender.start()
    answer = _read_all(sock)
    waited = time.monotonic() - start
    stop.set()
    sender.join()
    sock.close()
    assert waited < REQUEST_TIMEOUT_S + 1.5 and answer == b"", "cut off at the deadline, without an answer"


def test_a_replayed_slash_command_runs_once(slack: SlackEmulator, http_bot: tuple[Core, str]) -> None:
    """A signed request replayed within Slack's five minutes is acked and does nothing more."""
    _, url = http_bot
    body = urlencode(slack.command_body("/assistant", "status", ADMIN, CHANNEL)).encode()
    stamp = int(time.time())
    for _ in range(2):
        assert slack.post_signed(url, body, "application/x-www-form-urlencoded", timestamp=stamp).status == 200
    slack.wait_for(slack.responses, what="the command's answer")
    assert slack.stays(lambda: len(slack.responses()) == 1, for_s=1.0), "the replay ran the command again"


def test_more_connections_than_it_serves_at_once_are_answered_busy_at_once(http_bot: tuple[Core, str]) -> None:
    """A crowd of connections that send half a request holds MAX_REQUESTS threads at most; one more
    is told 503 at once, and the server serves again once the stalled ones time out."""
    _, url = http_bot
    stalled = []
    for _ in range(MAX_REQUESTS):
        sock, path = _connect(url)
        sock.sendall(_head(path, 1000))  # and no body
        stalled.append(sock)
    time.sleep(0.3)  # every one of them is being served
    extra, path = _connect(url)
    with extra:
        start = time.monotonic()
        extra.sendall(_head(path, 2) + b"{}")
        answer = _read_all(extra)
    assert answer.split()[1] == b"503" and time.monotonic() - start < 1.0
    for sock in stalled:
        with sock:
            _read_all(sock)  # each cut off at its deadline (408)
    assert _post(url, 2).split()[1] == b"401", "served again: an unsigned request is refused as ever"
