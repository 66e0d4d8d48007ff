"""The 4-bit model is quantized once and kept: later starts load it in a fraction of the time
(bench/cpu_speed.py), with exactly the logits of quantizing at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.model_files import load_4bit


@pytest.mark.slow
def test_the_4bit_model_is_quantized_once_then_loaded_with_the_same_logits(tmp_path: Path, real_files) -> None:
    import torch

    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), model_cache=str(tmp_path / "cache"))
    quantized = load_4bit(settings, real_files, torch.float32, "cpu")
    [kept] = list((tmp_path / "cache" / "nf4").iterdir())
    assert (kept / "config.json").is_file() and kept.name.startswith(real_files.fingerprint[:16])
    ids = torch.tensor([[1, 9690, 198, 19556, 2, 198]])
    with torch.inference_mode():
        expected = quantized(ids).logits
        assert torch.equal(load_4bit(settings, real_files, torch.float32, "cpu")(ids).logits, expected)
        (kept / "model.safetensors").write_bytes(b"not weights")  # damaged: quantized again, replaced
        assert torch.equal(load_4bit(settings, real_files, torch.float32, "cpu")(ids).logits, expected)
    assert (kept / "model.safetensors").stat().st_size > 1_000_000
