"""Versioned LoRA directories with a manifest, and active/previous pointers updated atomically.

Layout under <data_dir>/loras/:
    v0001/ adapter files, manifest.json (written last), loss.png
    .staging-<id>/  a run in progress; never listed
    pointers.json   {"active": "v0002", "previous": "v0001", "history": [...]}
    .lock           held while a version or the pointers are written

A version directory appears only through os.replace of a complete staging directory, and the
pointer file only through os.replace of a complete temporary file, so a crash at any moment
leaves either the old state or the new one, never a mix. Readers therefore need no lock. Writers
do: the bot, the CLI and the training process share this directory, and a read-modify-write of
the pointers (or picking the next version number) from two processes at once would lose one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from bot.config import Settings
from bot.types import LoraVersion, UserError

MANIFEST = "manifest.json"
POINTERS = "pointers.json"
LOCK = ".lock"
_ANY = object()  # promote whatever serves now
_VERSION_RE = re.compile(r"^v(\d{4,})$")
REQUIRED_FILES = ("adapter_config.json",)


class LoraRegistry:
    def __init__(self, root: Path, base_model: str, base_fingerprint: str) -> None:
        self.root = root
        self.base_model = base_model
        self.base_fingerprint = base_fingerprint
        root.mkdir(parents=True, exist_ok=True)
        # The thread lock keeps this process's threads apart whatever filelock's thread semantics.
        self._thread_lock = threading.Lock()
        self._file_lock = FileLock(str(root / LOCK))
        self._validated: str | None = None  # the last active version whose manifest was checked

    @classmethod
    def open(cls, settings: Settings, base_fingerprint: str) -> LoraRegistry:
        return cls(settings.data_dir / "loras", settings.model, base_fingerprint)

    # writing -----------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across threads and processes."""
        with self._thread_lock, self._file_lock:
            yield

    def new_staging(self) -> Path:
        path = self.root / f".staging-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        return path

    def commit(self, staging: Path, manifest: dict[str, Any]) -> LoraVersion:
        """Turn a finished staging directory into the next version (a candidate until promoted)."""
        missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
        if missing:
            raise ValueError(f"{staging} is not a saved LoRA: missing {', '.join(missing)}")
        with self._locked():
            version = self._next_version()
            manifest = {
                **manifest,
                "version": version,
                "base_model": self.base_model,
                "base_fingerprint": self.base_fingerprint,
                "committed_at": time.time(),
            }
            _write_json(staging / MANIFEST, manifest)
            os.replace(staging, self.root / version)
        return self.get(version)

    def promote(self, version: str, by: str) -> None:
        """Serve `version`; the one serving now becomes the previous (the rollback target)."""
        self._promote(version, by, _ANY)

    def promote_if_active(self, version: str, expected_active: str | None, by: str) -> bool:
        """Serve `version` only if `expected_active` (None: the base model) still serves.

        A training run compares its candidate with what served when it started; a `lora use` or
        `lora rollback` made meanwhile must win. Returns whether it promoted.
        """
        return self._promote(version, by, expected_active)

    def _promote(self, version: str, by: str, expected_active: object) -> bool:
        self.get(version)  # validates existence and base match
        with self._locked():
            pointers = self._pointers()
            active = pointers.get("active")
            if expected_active is not _ANY and active != expected_active:
                return False
            if active != version:
                self._set_pointers(version, active, by, "promote")
            return True

    def use(self, version: str, by: str) -> None:
        self.promote(version, by)

    def rollback(self, by: str) -> str | None:
        """Swap active and previous. Returns the version now serving (None = the base model)."""
        with self._locked():
            pointers = self._pointers()
            active, previous = pointers.get("active"), pointers.get("previous")
            if active is None and previous is None:
                raise UserError("nothing to roll back to: no LoRA has been served yet")
            if previous is not None:
                self.get(previous)
            self._set_pointers(previous, active, by, "rollback")
            return previous

    def _next_version(self) -> str:
        numbers = [int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION_RE.match(p.name))]
        return f"v{max(numbers, default=0) + 1:04d}"

    def _set_pointers(self, active: str | None, previous: str | None, by: str, action: str) -> None:
        pointers = self._pointers()
        history = list(pointers.get("history", []))[-49:]
        history.append({"at": time.time(), "by": by, "action": action, "active": active, "previous": previous})
        _write_json(self.root / POINTERS, {"active": active, "previous": previous, "history": history})

    # reading -----------------------------------------------------------------------------------

    def _pointers(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / POINTERS).read_text())
        except FileNotFoundError:
            return {}

    def versions(self) -> list[LoraVersion]:
        """Every complete version (a manifest present), oldest first."""
        pointers = self._pointers()
        found: list[LoraVersion] = []
        for path in sorted(self.root.iterdir()):
            if not _VERSION_RE.match(path.name) or not (path / MANIFEST).is_file():
                continue
            try:
                manifest = json.loads((path / MANIFEST).read_text())
            except json.JSONDecodeError:
                continue
            found.append(_lora_version(path, manifest, pointers))
        return found

    def get(self, version: str) -> LoraVersion:
        """A usable version, or UserError saying why not (unknown, incomplete, other base model)."""
        if not _VERSION_RE.match(version):
            raise UserError(f"{version!r} is not a LoRA version name (they look like v0003); see `lora list`")
        path = self.root / version
        if not (path / MANIFEST).is_file():
            raise UserError(f"no usable LoRA {version!r}; see `lora list`")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except json.JSONDecodeError:
            raise UserError(f"LoRA {version} has a corrupt manifest; it cannot be used") from None
        if manifest.get("base_fingerprint") != self.base_fingerprint:
            raise UserError(
                f"LoRA {version} was trained on base model {manifest.get('base_model')!r} "
                f"(weights {manifest.get('base_fingerprint')}), not on the model served now "
                f"({self.base_model!r}, weights {self.base_fingerprint}); it cannot be used"
            )
        for name in REQUIRED_FILES:
            if not (path / name).is_file():
                raise UserError(f"LoRA {version} is missing {name}; it cannot be used")
        return _lora_version(path, manifest, self._pointers())

    def active_pointer(self) -> str | None:
        """The active version's name, from the pointer file alone; None = the base model."""
        return self._pointers().get("active")

    def active(self) -> LoraVersion | None:
        version = self.active_pointer()
        return self.get(version) if version else None

    def active_lora(self) -> tuple[str, Path] | None:
        """(version, directory) to serve, for the generation engine; None = the base model.

        The generation worker polls this every second, so it reads the pointer file only and
        checks a version's manifest only when the pointer names a version not checked yet (a
        committed version never changes). Raises UserError when the active version is unusable;
        the engine then keeps serving what it has.
        """
        version = self.active_pointer()
        if version is None:
            return None
        if version != self._validated:
            self.get(version)
            self._validated = version
        return version, self.root / version

    def path_for(self, version: str) -> Path:
        return Path(self.get(version).path)

    def clean_staging(self, older_than_s: float = 0.0) -> int:
        """Remove staging directories left by crashed runs. Returns how many were removed."""
        removed = 0
        with self._locked():  # never while another process commits one of them
            for path in self.root.glob(".staging-*"):
                if time.time() - path.stat().st_mtime >= older_than_s:
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
        return removed

    def prune_candidates(self, keep: int, keep_loaded: int) -> list[str]:
        """Delete all but the newest `keep` candidates (retention.keep_candidates); returns the versions
        deleted. The active and previous versions are never candidates, and the last `keep_loaded`
        versions served are kept too: an engine may hold them (training.keep_loaded)."""
        with self._locked():  # never while a version is promoted or committed
            pointers = self._pointers()
            served = [entry["active"] for entry in reversed(pointers.get("history", [])) if entry.get("active")]
            protected = {pointers.get("active"), pointers.get("previous"), *list(dict.fromkeys(served))[:keep_loaded]}
            candidates = [v.version for v in self.versions() if v.version not in protected]
            doomed = candidates[: max(0, len(candidates) - keep)]  # oldest first
            for version in doomed:
                # Out of the listing at once; a crash mid-delete leaves a staging leftover clean_staging removes.
                trash = self.root / f".staging-pruned-{version}-{uuid.uuid4().hex[:8]}"
                os.replace(self.root / version, trash)
                shutil.rmtree(trash, ignore_errors=True)
        return doomed

    def describe(self) -> str:
        versions = self.versions()
        if not versions:
            return "No LoRA versions yet; the base model is serving. Run `retrain` to train one."
        lines = ["LoRA versions (newest last):"]
        for v in versions:
            summary = v.manifest.get("reason", "")
            retriever = v.manifest.get("retriever") or {}
            if retriever.get("kept"):  # the version also maps questions for retrieval (bot/query_adapter.py)
                summary += f"; retriever: {retriever['top1_before']} -> {retriever['top1_after']} held-out found first"
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at))
            lines.append(f"  {v.version}  {v.status:<9}  {when}  {summary}")
        if not any(v.status == "active" for v in versions):
            lines.append("  (the base model is serving)")
        return "\n".join(lines)


def _lora_version(path: Path, manifest: dict[str, Any], pointers: dict[str, Any]) -> LoraVersion:
    status = (
        "active"
        if pointers.get("active") == path.name
        else "previous"
        if pointers.get("previous") == path.name
        else "candidate"
    )
    return LoraVersion(path.name, str(path), float(manifest.get("committed_at", 0)), status, manifest)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
