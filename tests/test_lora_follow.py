"""Following the registry when its LoRA cannot be loaded: said once, not retried every second."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.generation.lora_follow import LoraFollower, LoraUnavailable


class Follower(LoraFollower):
    """A follower whose engine cannot load v0002 (a read-only cache, say)."""

    def __init__(self, source) -> None:
        super().__init__(source, lambda: 3, self._load, lambda name: None)
        self.loads: list[str] = []

    def _load(self, name: str, version: str, path: Path) -> None:
        self.loads.append(version)
        if version == "v0002":
            raise OSError("Permission denied: /opt/bot/models/lora-gguf")


def test_a_lora_that_does_not_load_is_reported_once_and_not_retried(tmp_path: Path, caplog) -> None:
    wanted = [("v0001", tmp_path / "v0001")]
    follower = Follower(lambda: wanted[0])
    follower.sync()
    assert follower.version == "v0001"
    wanted[0] = ("v0002", tmp_path / "v0002")
    with caplog.at_level(logging.ERROR), pytest.raises(LoraUnavailable, match="v0002 cannot be loaded"):
        follower.sync()
    for _ in range(5):  # the generation worker looks every second
        assert not follower.swap_pending()
        with pytest.raises(LoraUnavailable):
            follower.sync()
    assert follower.loads == ["v0001", "v0002"] and follower.version == "v0001"
    assert len([r for r in caplog.records if "cannot be loaded" in r.getMessage()]) == 1
    wanted[0] = ("v0001", tmp_path / "v0001")  # a rollback is followed as ever
    assert not follower.swap_pending()
    wanted[0] = None
    assert follower.swap_pending()
    follower.sync()
    assert follower.version is None
