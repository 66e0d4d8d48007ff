"""Following the LoRA registry: the part every engine holds that decides when to load, use and
unload a LoRA version. Each engine supplies only how (its `load`, `unload` and `use`)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

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
    """What every engine holds (`engine.loras`): `sync` (on the generation worker, between replies)
    brings the LoRA serving in line with `source`; the last `keep_loaded()` versions stay in
    memory, so a rollback or a swap back costs nothing. The engine supplies only how: `load`
    (name, version, directory), `unload` (name) and, where a loaded LoRA must be switched on,
    `use` (name)."""

    def __init__(
        self,
        source: LoraSource | None,
        keep_loaded: Callable[[], int],
        load: Callable[[str, str, Path], None],
        unload: Callable[[str], None],
        use: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self._keep_loaded = keep_loaded  # read at each swap: the setting can change
        self._load, self._unload, self._use = load, unload, use
        self._loaded = LoadedLoras()
        self._active: tuple[str, str, Path] | None = None  # (version, name, directory) serving; None: the base model
        self.last_swap_s: float | None = None
        self._failed: dict[str, str] = {}  # LoRA name -> why it did not load

    @property
    def version(self) -> str | None:
        """The LoRA version serving; None: the base model."""
        return self._active[0] if self._active else None

    @property
    def name(self) -> str | None:
        """The name the serving LoRA is loaded under (`lora_name`)."""
        return self._active[1] if self._active else None

    @property
    def serving(self) -> tuple[str, Path] | None:
        """(version, directory) of the LoRA serving: what else the version holds (its query adapter)
        goes with it."""
        return (self._active[0], self._active[2]) if self._active else None

    def swap_pending(self) -> bool:
        """Whether the registry asks for another LoRA than the one serving (no swap made)."""
        wanted = self.source() if self.source else None
        if wanted is not None and lora_name(*wanted) in self._failed:
            return False  # nothing to wait for: it does not load
        return (wanted[0] if wanted else None) != self.version

    def sync(self) -> None:
        wanted = self.source() if self.source else None
        if (wanted[0] if wanted else None) == self.version:
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
                    self._load(name, version, path)
                except Exception as exc:
                    self._failed[name] = f"LoRA {version} cannot be loaded: {exc}"
                    log.error("%s; %s keeps serving until the registry points elsewhere",
                              self._failed[name], self.version or "the base model")  # fmt: skip
                    raise LoraUnavailable(self._failed[name]) from exc
            if self._use is not None:
                self._use(name)
            self._active = (version, name, path)
            for oldest in self._loaded.use(name, self._keep_loaded()):
                self._unload(oldest)
                log.info("unloaded LoRA %s from memory (still on disk)", oldest)
        self.last_swap_s = time.monotonic() - started
        log.info("now serving LoRA %s (swap %.3f s)", self.version or "none (base model)", self.last_swap_s)

    def loaded(self) -> list[str]:
        """The versions in memory, least recently used first."""
        return self._loaded.versions()
