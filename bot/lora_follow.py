"""Following the LoRA registry: the part of every engine that decides when to load, use and unload
a LoRA version. Each engine supplies only how (`_load_lora`, `_use_lora`, `_unload_lora`)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
LoraSource = Callable[[], tuple[str, Path] | None]  # the registry's active (version, directory), or None
_ADAPTER_SEP = "__"  # adapter name = version + this + a hash of its directory


def lora_name(version: str, path: Path) -> str:
    """The name a LoRA is loaded under. A version's name is unique in one registry only: the name
    carries its directory too, so a v0001 of another registry (a recreated data dir, a test) is
    never mistaken for it."""
    return f"{version}{_ADAPTER_SEP}{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"


class LoraUnavailable(RuntimeError):
    """The registry's LoRA failed to load before: not tried again until the registry points elsewhere
    (it was retried every second, each time with a traceback)."""


class LoadedLoras(list[str]):
    """The LoRA names a model holds, least recently used first."""

    def use(self, name: str, keep: int) -> list[str]:
        """`name` becomes the most recently used (added if new); returns the names to unload so
        that at most `keep` stay (read from the settings at each swap: they can change)."""
        if name in self:
            self.remove(name)
        self.append(name)
        evicted = self[: max(0, len(self) - keep)]
        del self[: len(evicted)]
        return evicted

    def versions(self) -> list[str]:
        """The versions loaded, least recently used first."""
        return [name.split(_ADAPTER_SEP)[0] for name in self]


class LoraFollower:
    """Mixin for an engine: `sync_lora` (on the generation worker, between replies) brings the LoRA
    serving in line with `lora_source`; the last `keep_loaded` versions stay in memory, so a
    rollback or a swap back costs nothing."""

    settings: Any
    lora_source: LoraSource | None

    def _init_lora_following(self, lora_source: LoraSource | None) -> None:
        self.lora_source = lora_source
        self._loaded = LoadedLoras()
        self._active: tuple[str, str] | None = None  # (version, name) serving; None: the base model
        self.last_swap_s: float | None = None
        self._failed: dict[str, str] = {}  # LoRA name -> why it did not load

    @property
    def lora_version(self) -> str | None:
        return self._active[0] if self._active else None

    def swap_pending(self) -> bool:
        """Whether the registry asks for another LoRA than the one serving (no swap made)."""
        wanted = self.lora_source() if self.lora_source else None
        if wanted is not None and lora_name(*wanted) in self._failed:
            return False  # nothing to wait for: it does not load
        return (wanted[0] if wanted else None) != self.lora_version

    def sync_lora(self) -> None:
        wanted = self.lora_source() if self.lora_source else None
        if (wanted[0] if wanted else None) == self.lora_version:
            return
        started = time.monotonic()
        if wanted is None:
            self._active = None
        else:
            version, path = wanted
            name = lora_name(version, path)
            if name in self._failed:
                raise LoraUnavailable(self._failed[name])
            if name not in self._loaded:
                try:
                    self._load_lora(name, version, path)
                except Exception as exc:
                    self._failed[name] = f"LoRA {version} cannot be loaded: {exc}"
                    log.error("%s; %s keeps serving until the registry points elsewhere",
                              self._failed[name], self.lora_version or "the base model")  # fmt: skip
                    raise LoraUnavailable(self._failed[name]) from exc
            self._use_lora(name)
            self._active = (version, name)
            for oldest in self._loaded.use(name, self.settings.training.keep_loaded):
                self._unload_lora(oldest)
                log.info("unloaded LoRA %s from memory (still on disk)", oldest)
        self.last_swap_s = time.monotonic() - started
        log.info("now serving LoRA %s (swap %.3f s)", self.lora_version or "none (base model)", self.last_swap_s)

    def loaded_loras(self) -> list[str]:
        """The versions in memory, least recently used first."""
        return self._loaded.versions()

    def _load_lora(self, name: str, version: str, path: Path) -> None:
        raise NotImplementedError

    def _use_lora(self, name: str) -> None:
        """Make the loaded LoRA `name` the one replies use (nothing to do for most engines)."""

    def _unload_lora(self, name: str) -> None:
        raise NotImplementedError
