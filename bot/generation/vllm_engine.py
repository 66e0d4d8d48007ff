"""Generation on a vLLM server (OpenAI-compatible API, runtime LoRA updates), for teams with GPUs.

The bot keeps everything else: retrieval, the prompt (built and tokenized here, so user text can
never forge a special token: the server gets token ids, not text), feedback, training and the
registry. This engine streams the completion back through the same worker interface and follows
the registry like the in-process one: each new version is loaded under its own name
(`/v1/load_lora_adapter`, which needs the server started with `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, and the registry's directory mounted at the same path),
each request names the version that serves, and old versions are unloaded.
With `vllm_api_key` set, every request sends it as a bearer token (the server's `--api-key`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bot.config import Settings
from bot.generation.decoding import STOP_STRINGS
from bot.generation.engine import NO_HINTS, OneAtATime, ReplyHints
from bot.generation.lora_follow import LoraFollower, LoraSource
from bot.generation.model_files import ModelFiles
from bot.types import UserError

log = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=30.0)


class VLLMEngine(OneAtATime):
    def __init__(
        self,
        settings: Settings,
        files: ModelFiles,
        lora_source: LoraSource | None = None,
        tokenizer: Any = None,
    ) -> None:
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(files.path)
        self.settings = settings
        self.tokenizer = tokenizer
        self.files = files
        self.description = f"vLLM at {settings.vllm_url}"
        # Every call goes through this client, so each one (completions, LoRA loads) carries the key.
        auth = {"Authorization": f"Bearer {settings.vllm_api_key}"} if settings.vllm_api_key else {}
        self._http = httpx.Client(base_url=settings.vllm_url.rstrip("/"), timeout=TIMEOUT, headers=auth)
        self.base_model = self._served_model()
        # The LoRAs loaded: those on the server.
        self.loras = LoraFollower(lora_source, lambda: self.settings.tuning.keep_loaded, self._load_lora,
                                 self._unload_lora)  # fmt: skip

    def _served_model(self) -> str:
        """The base model the server serves (vLLM lists it first; LoRAs follow, named `parent`)."""
        models = self._call("GET", "/v1/models")["data"]
        bases = [m["id"] for m in models if not m.get("parent")]
        if not bases:
            raise UserError(f"the vLLM server at {self.settings.vllm_url} serves no model")
        return str(bases[0])

    def hold(self, input_ids: list[int], hints: ReplyHints, stop: Callable[[], bool]) -> int:
        return 0  # the server keeps prompt starts itself (vLLM's prefix caching)

    def generate(
        self, input_ids: list[int], max_new_tokens: int, on_text: Callable[[str], None], hints: ReplyHints = NO_HINTS
    ) -> int:
        bias = self.settings.tuning.answer_bias
        body: dict[str, Any] = {
            "model": self.base_model if hints.base_only or self.loras.name is None else self.loras.name,
            "prompt": input_ids,  # token ids: the server never re-reads user text as special tokens
            "max_tokens": max_new_tokens,
            "temperature": self.settings.tuning.temperature,
            "repetition_penalty": self.settings.tuning.repetition_penalty,
            "stop": list(STOP_STRINGS),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if bias and hints.favored:  # OpenAI's logit_bias is the answer bias (docs/decoding.md)
            body["logit_bias"] = {str(token): bias for token in hints.favored}
        return self.stream_completion(body, on_text)

    def stream_completion(self, body: dict[str, Any], on_text: Callable[[str], None]) -> int:
        """POST a streamed completion; each piece of text to `on_text`; returns the tokens written
        (the server's usage when it sends one, else one a chunk, as vLLM streams them)."""
        chunks, usage = 0, None
        with self._http.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                raise RuntimeError(f"vLLM answered {response.status_code}: {response.text[:300]}")
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: ") :])
                for choice in chunk.get("choices") or ():
                    if choice.get("text"):
                        chunks += 1
                        on_text(choice["text"])
                if chunk.get("usage"):
                    usage = int(chunk["usage"]["completion_tokens"])
        return usage if usage is not None else chunks

    # LoRAs on the server (bot/generation/lora_follow.py decides when) ----------------------------------------

    def _load_lora(self, name: str, version: str, path: Path) -> None:
        self._call("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path.resolve())})

    def _unload_lora(self, name: str) -> None:
        self._call("POST", "/v1/unload_lora_adapter", {"lora_name": name})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"cannot reach the vLLM server at {self.settings.vllm_url}: {exc}") from exc
        if response.status_code != 200:
            raise RuntimeError(f"vLLM {path} answered {response.status_code}: {response.text[:300]}")
        return response.json() if response.headers.get("content-type", "").startswith("application/json") else None
