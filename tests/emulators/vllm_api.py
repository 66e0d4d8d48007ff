"""A local emulator of a vLLM server's HTTP API, for tests on machines without a GPU.

It speaks the documented wire protocol (OpenAI Completions with server-sent events, `/v1/models`,
and the runtime LoRA endpoints enabled by VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) so that the bot's
real client code runs against it over loopback. Its "model" writes `Answer from <model>.` word
by word, so a test sees which base model or LoRA served each request.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BASE = "smollm2-135m-instruct"


@dataclass
class VLLMEmulator:
    base_model: str = BASE
    loras: dict[str, str] = field(default_factory=dict)  # name -> path
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_completions: int = 0  # answer this many completions with a 500
    api_key: str = ""  # as vLLM's --api-key: when set, every /v1 request without it gets a 401
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _refused(self) -> bool:
                """vLLM checks the key on /v1 paths only (its /health stays open for probes)."""
                if not emulator.api_key or not self.path.startswith("/v1"):
                    return False
                if self.headers.get("Authorization") == f"Bearer {emulator.api_key}":
                    return False
                self._json(401, {"error": "Unauthorized"})
                return True

            def do_GET(self) -> None:
                if self._refused():
                    return
                if self.path != "/v1/models":
                    return self._json(404, {"error": {"message": "Not Found"}})
                models = [{"id": emulator.base_model, "object": "model", "parent": None}]
                models += [{"id": n, "object": "model", "parent": emulator.base_model, "root": p}
                           for n, p in emulator.loras.items()]  # fmt: skip
                self._json(200, {"object": "list", "data": models})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self._refused():
                    return
                with emulator.lock:
                    emulator.requests.append((self.path, body))
                if self.path == "/v1/completions":
                    return self._complete(body)
                if self.path == "/v1/load_lora_adapter":
                    name, path = body.get("lora_name"), body.get("lora_path")
                    if name in emulator.loras:
                        return self._json(400, _error(f"The lora adapter '{name}' has already been loaded."))
                    if not path or not (Path(path) / "adapter_config.json").is_file():
                        return self._json(400, _error(f"Loading lora {name} failed: No adapter found for {path}"))
                    emulator.loras[name] = path
                    return self._text(200, f"Success: LoRA adapter '{name}' added successfully.")
                if self.path == "/v1/unload_lora_adapter":
                    name = body.get("lora_name")
                    if emulator.loras.pop(name, None) is None:
                        return self._json(404, _error(f"The lora adapter '{name}' cannot be found."))
                    return self._text(200, f"Success: LoRA adapter '{name}' removed successfully.")
                self._json(404, {"error": {"message": "Not Found"}})

            def _complete(self, body: dict[str, Any]) -> None:
                model = body.get("model")
                if model != emulator.base_model and model not in emulator.loras:
                    return self._json(404, _error(f"The model `{model}` does not exist."))
                prompt = body.get("prompt")
                if not (
                    isinstance(prompt, str) or (isinstance(prompt, list) and all(isinstance(t, int) for t in prompt))
                ):
                    return self._json(400, _error("prompt must be a string or a list of token ids"))
                with emulator.lock:
                    failing = emulator.fail_completions > 0
                    emulator.fail_completions -= 1 if failing else 0
                if failing:
                    return self._json(500, _error("CUDA out of memory"))
                words = f"Answer from {model}.".split()[: int(body.get("max_tokens", 16))]
                pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
                if not body.get("stream"):
                    return self._json(200, {"choices": [{"index": 0, "text": "".join(pieces), "finish_reason": "stop"}],
                                            "usage": {"completion_tokens": len(pieces)}})  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in pieces:
                    self._event({"object": "text_completion", "model": model,
                                 "choices": [{"index": 0, "text": piece, "finish_reason": None}]})  # fmt: skip
                self._event({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": len(prompt), "completion_tokens": len(pieces)}
                    self._event({"choices": [], "usage": usage})
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _event(self, data: dict[str, Any]) -> None:
                self._chunk(f"data: {json.dumps(data)}\n\n".encode())

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _json(self, status: int, data: dict[str, Any]) -> None:
                self._send(status, json.dumps(data).encode(), "application/json")

            def _text(self, status: int, text: str) -> None:
                self._send(status, text.encode(), "text/plain; charset=utf-8")

            def _send(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for p, body in self.requests if p == path]


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "BadRequestError"}}
