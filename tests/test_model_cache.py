"""The 4-bit model is quantized once and kept: later starts load it in a fraction of the time
(bench/cpu_speed.py), with exactly the logits of quantizing at load, on each of bitsandbytes' CPU
paths (the plain one, and the repacked one that CPUs with AVX512-BF16 take at the first forward)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import load_settings
from bot.generation.cpu_packing import packed_layers
from bot.generation.model_files import load_4bit
from tests.test_cpu_packing import _has_avx512_bf16


def on_path(model: Any, path: str) -> Any:
    from bitsandbytes.nn import Linear4bit

    for layer in model.modules():
        if isinstance(layer, Linear4bit):
            layer.support_avx512bf16_for_cpu = path == "repacked"
    return model


@pytest.mark.slow
@pytest.mark.parametrize("path", ["plain", "repacked"])
def test_the_4bit_model_is_quantized_once_then_loaded_with_the_same_logits(
    path: str, tmp_path: Path, real_files
) -> None:
    import torch

    if path == "repacked" and not _has_avx512_bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes has no repacked kernel here")
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), model_cache=str(tmp_path / "cache"))
    quantized = on_path(load_4bit(settings, real_files, torch.float32, "cpu"), path)
    [kept] = list((tmp_path / "cache" / "nf4").iterdir())
    assert (kept / "config.json").is_file() and kept.name.startswith(real_files.fingerprint[:16])
    ids = torch.tensor([[1, 9690, 198, 19556, 2, 198]])
    with torch.inference_mode():
        expected = quantized(ids).logits
        assert (packed_layers(quantized) > 0) == (path == "repacked")
        cached = on_path(load_4bit(settings, real_files, torch.float32, "cpu"), path)
        assert torch.equal(cached(ids).logits, expected)
        (kept / "model.safetensors").write_bytes(b"not weights")  # damaged: quantized again, replaced
        again = on_path(load_4bit(settings, real_files, torch.float32, "cpu"), path)
        assert torch.equal(again(ids).logits, expected)
    assert (kept / "model.safetensors").stat().st_size > 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize("path", ["plain", "repacked"])
def test_the_process_that_fills_the_cache_can_train_on_its_model(path: str, tmp_path: Path, real_files) -> None:
    """Training dequantizes the 4-bit model on CPU; the first load of a fresh cache once failed
    there ('Invalid device string: float32'): saving had left the model's config changed. As in the
    training pipeline, the model has answered first (on this bitsandbytes path) and been unpacked.
    Without AVX512-BF16 the repacked layout is forced after the answer, as that CPU's forward would
    have left it (bot/generation/cpu_packing.py: pack_now), so both paths run on every CPU."""
    import torch

    from bot.generation.cpu_packing import PackingGuard, pack_now

    kernel = path == "repacked" and _has_avx512_bf16()
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), model_cache=str(tmp_path / "cache"))
    for _ in ("fills the cache", "reads it"):
        model = on_path(load_4bit(settings, real_files, torch.float32, "cpu"), "repacked" if kernel else "plain")
        packing = PackingGuard(model)
        with torch.inference_mode():
            model(torch.tensor([[1, 9690, 198]]))
        if path == "repacked" and not kernel:
            pack_now(model)
        assert (packed_layers(model) > 0) == (path == "repacked")
        packing.unpack()
        assert next(model.dequantize().parameters()).dtype == torch.float32
