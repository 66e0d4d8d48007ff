"""One process writes the example store: the running bot. Others ask it over a local socket.

chromadb's embedded store (PersistentClient) is not process-safe, and with chromadb 1.5 a second
process is not merely risky but wrong (measured): each process keeps the vector index it loaded,
so examples another process writes are counted but never retrieved by the bot until it restarts,
and a reader opened before a write never finds it either. So:

- the bot (`bot run`, `bot chat`) holds <data_dir>/bot.lock for as long as it runs and answers on
  <data_dir>/bot.sock (mode 0600: its own user only) with the store it serves from;
- the CLI and the training process go through `examples_access`: when a bot answers they send it
  their writes (and the trainer its one read, a snapshot); when the lock is free they take it and
  open the store themselves for as long as they use it. Nothing writes the store behind a bot.

Protocol: one JSON object per line each way; every reply has "ok", and "error" when it is false.
    {"op": "ping"}                                      -> {"pid"}
    {"op": "count"}                                     -> {"count"}
    {"op": "upsert", "rows": [{"input", "output", "label"}], "source"} -> {"ids", "count"}
    {"op": "remove", "ids": [...]}                      -> {"removed", "count"}
    {"op": "rows"}                                      -> {"ids", "metadatas", "dims", "embeddings"}
("embeddings": the float32 rows, little-endian, base64.)
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from filelock import FileLock, Timeout

from bot.embedder import Embedder
from bot.stores.examples import ExampleStore, ParsedExample, Rows, parse_example
from bot.types import UserError

log = logging.getLogger(__name__)
LOCK_FILE = "bot.lock"
SOCKET_FILE = "bot.sock"
_BATCH = 500  # rows per upsert request: progress to show, and requests of a bounded size
_MAX_REQUEST_BYTES = 64 * 1024 * 1024


class ExampleWriter(Protocol):
    """What the CLI needs of an example store; ExampleStore and RemoteExamples both are one."""

    def upsert(
        self, items: Sequence[ParsedExample], source: str, *, progress: Callable[[int, int], None] | None = None
    ) -> list[str]: ...

    def remove(self, ids: Sequence[str]) -> int: ...

    def count(self) -> int: ...

    def rows(self) -> Rows: ...


@contextmanager
def _address(path: Path) -> Iterator[str]:
    """`path` as a socket address; a Unix socket address holds at most 107 bytes."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    # Linux: the same directory through a descriptor of ours, a short path whatever the data dir.
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


# the client: the CLI and the training process -----------------------------------------------


class RemoteExamples:
    """The running bot's example store, through its control socket."""

    def __init__(self, data_dir: Path, timeout_s: float = 900.0) -> None:
        self.path = data_dir / SOCKET_FILE
        self.timeout_s = timeout_s

    def call(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one request; UserError when the bot refuses it. OSError when no bot listens."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s or self.timeout_s)
            with _address(self.path) as address:
                sock.connect(address)
            sock.sendall(json.dumps(request, ensure_ascii=False).encode() + b"\n")
            with sock.makefile("rb") as reader:
                line = reader.readline()
        if not line:
            raise UserError("the running bot closed the connection without answering; see its log")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise UserError(f"the running bot refused: {reply.get('error')}")
        return reply

    def ping(self) -> int | None:
        """The bot's pid, or None when no bot answers."""
        try:
            return int(self.call({"op": "ping"}, timeout_s=5.0)["pid"])
        except (OSError, UserError, ValueError):
            return None

    def upsert(
        self, items: Sequence[ParsedExample], source: str, *, progress: Callable[[int, int], None] | None = None
    ) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(items), _BATCH):
            batch = items[start : start + _BATCH]
            rows = [{"input": i.input, "output": i.output, "label": i.label} for i in batch]
            ids += self.call({"op": "upsert", "rows": rows, "source": source})["ids"]
            if progress:
                progress(start + len(batch), len(items))
        return ids

    def remove(self, ids: Sequence[str]) -> int:
        return int(self.call({"op": "remove", "ids": list(ids)})["removed"])

    def count(self) -> int:
        return int(self.call({"op": "count"})["count"])

    def rows(self) -> Rows:
        reply = self.call({"op": "rows"})
        raw = np.frombuffer(base64.b64decode(reply["embeddings"]), dtype="<f4")
        return list(reply["ids"]), list(reply["metadatas"]), raw.reshape(len(reply["ids"]), int(reply["dims"]))


@contextmanager
def examples_access(
    data_dir: Path, open_local: Callable[[], ExampleStore], wait_s: float = 30.0
) -> Iterator[ExampleWriter]:
    """The example store, for any process but the bot's.

    With a bot running: the bot's store, through its socket. Otherwise the store itself, opened
    with `open_local` under the owner lock, which is held until the block ends (a bot starting
    meanwhile waits). A lock held by a process that does not answer (a bot still starting, another
    CLI command writing) is waited for up to `wait_s`, then refused: never written around.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(data_dir / LOCK_FILE), thread_local=False)
    remote = RemoteExamples(data_dir)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lock.acquire(timeout=0.2)
            break
        except Timeout:
            pass
        if remote.ping() is not None:
            yield remote
            return
        if time.monotonic() >= deadline:
            raise UserError(
                f"another process holds {data_dir / LOCK_FILE} but does not answer on {SOCKET_FILE} "
                "(a bot still starting, or another `bot examples` command); try again when it is done"
            )
    try:
        yield open_local()
    finally:
        lock.release()


def snapshot(data_dir: Path, embedder: Embedder, open_local: Callable[[], ExampleStore]) -> ExampleStore:
    """A copy of the examples as they are now, in this process's memory, embeddings included.

    For the training process, which reads the examples for an hour or more (its dataset, then
    retrieval in its gate) while the bot may write: one consistent read through the owner, and it
    never opens the bot's store.
    """
    with examples_access(data_dir, open_local) as source:
        rows = source.rows()
    copy = ExampleStore.in_memory(embedder)
    copy.load_rows(rows)
    return copy


# the server: the bot ------------------------------------------------------------------------


def handle_request(examples: ExampleStore, request: dict[str, Any]) -> dict[str, Any]:
    """One request to the bot's store; raises (UserError, ValueError, KeyError) on a bad one."""
    op = request.get("op")
    if op == "ping":
        return {"pid": os.getpid()}
    if op == "count":
        return {"count": examples.count()}
    if op == "upsert":
        items = [parse_example(row) for row in request["rows"]]  # the checks of a file import
        ids = examples.upsert(items, source=str(request["source"]))
        return {"ids": ids, "count": examples.count()}
    if op == "remove":
        return {"removed": examples.remove([str(i) for i in request["ids"]]), "count": examples.count()}
    if op == "rows":
        ids, metadatas, vectors = examples.rows()
        encoded = base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode()
        return {"ids": ids, "metadatas": metadatas, "dims": int(vectors.shape[1]), "embeddings": encoded}
    raise UserError(f"unknown operation {op!r}")


class _Handler(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        line = self.rfile.readline(_MAX_REQUEST_BYTES + 1)
        try:
            if len(line) > _MAX_REQUEST_BYTES:
                raise UserError(f"request over {_MAX_REQUEST_BYTES} bytes")
            reply = {"ok": True, **handle_request(self.server.examples, json.loads(line))}
        except Exception as exc:
            log.warning("control request refused: %s: %s", type(exc).__name__, exc)
            reply = {"ok": False, "error": str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"}
        self.wfile.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, examples: ExampleStore) -> None:
        self.path = path
        self.examples = examples
        path.unlink(missing_ok=True)  # a crashed bot's socket; the caller holds the owner lock
        super().__init__(str(path), _Handler)

    def server_bind(self) -> None:
        with _address(self.path) as address:
            self.socket.bind(address)
        os.chmod(self.path, 0o600)  # before listen(): no one can connect until this is done


class DataDirOwner:
    """The running bot's claim on its data directory: the owner lock, then the control socket."""

    def __init__(self, data_dir: Path, lock: FileLock) -> None:
        self.data_dir = data_dir
        self._lock = lock
        self._server: ControlServer | None = None

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirOwner:
        """Take the owner lock. Waits while a CLI command writes; refuses when a bot runs there."""
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(data_dir / LOCK_FILE), thread_local=False)  # held by the process
        told = False
        while True:
            try:
                lock.acquire(timeout=1.0)
                return cls(data_dir, lock)
            except Timeout:
                pass
            pid = RemoteExamples(data_dir).ping()
            if pid is not None:
                raise UserError(
                    f"another bot (pid {pid}) is already running on {data_dir}; stop it, or give this one "
                    "its own data directory (BOT_DATA_DIR)"
                )
            if not told:
                log.warning("waiting for %s: another process is writing the examples", data_dir / LOCK_FILE)
                told = True

    def serve(self, examples: ExampleStore) -> None:
        """Answer on the control socket from now on, on a daemon thread."""
        self._server = ControlServer(self.data_dir / SOCKET_FILE, examples)
        # The thread's target is bound to this owner: the lock lives as long as the process serves.
        threading.Thread(target=self._serve, name="control", daemon=True).start()

    def _serve(self) -> None:
        assert self._server is not None
        self._server.serve_forever(poll_interval=0.5)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.path.unlink(missing_ok=True)
            self._server = None
        self._lock.release()
