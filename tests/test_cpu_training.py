"""What a CPU trains in (bot/finetune/qlora.py): bfloat16 where the CPU multiplies it in hardware
(AMX, AVX512-BF16), float32 elsewhere. Both paths run on every CPU: the choice is forced here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bot.config import load_settings
from bot.finetune.qlora import cpu_training_dtype
from tests.conftest import MODEL_CACHE


def _settings(tmp_path: Path, **overrides: object):
    return load_settings(env={}, data_dir=str(tmp_path / "data"), model_cache=str(MODEL_CACHE), **overrides)


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "expected"),
    [(True, True, "bfloat16"), (True, False, "bfloat16"), (False, True, "bfloat16"), (False, False, "float32")],
)
def test_auto_trains_in_bfloat16_only_where_the_cpu_multiplies_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, amx: bool, avx512_bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert cpu_training_dtype(_settings(tmp_path)) == expected
    for forced in ("float32", "bfloat16"):  # an admin's choice stands, whatever the CPU
        assert cpu_training_dtype(_settings(tmp_path, tuning__cpu_dtype=forced)) == forced


def test_a_dtype_the_trainer_does_not_know_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cpu_dtype"):
        _settings(tmp_path, tuning__cpu_dtype="float16")


@pytest.mark.slow
def test_each_cpu_dtype_trains_the_same_lora_from_the_same_starting_loss(tmp_path: Path, real_files) -> None:
    """One real step per path on the default model: the base computes in the chosen dtype, the
    LoRA is the same on both (TRL keeps a 4-bit model's LoRA in bfloat16, QLoRA's rule), and the
    first loss (the base model's, before any update) agrees within bf16's precision: the bf16 path
    computes the same thing, only faster where the CPU has the hardware."""
    from safetensors.torch import load_file

    from bot.finetune.qlora import dequantized_for_cpu, train_lora
    from bot.generation.hf_engine import HFEngine
    from bot.training.dataset import Row, TrainingData
    from bot.training.status import StatusFile

    rows = [Row([{"role": "user", "content": "How long is the reset link valid?"}],
                "The reset link expires after 30 minutes.", True, "test"),
            Row([{"role": "user", "content": "What is the refund window?"}],
                "You can get a refund within 14 days.", True, "test")]  # fmt: skip
    first_losses, saved = {}, {}
    for dtype in ("float32", "bfloat16"):
        settings = _settings(tmp_path, tuning__cpu_dtype=dtype, tuning__batch_size=2, training__lora_r=4)
        weights = dequantized_for_cpu(HFEngine(settings, real_files).model, settings).parameters()
        assert next(weights).dtype == getattr(torch, dtype)
        out = tmp_path / dtype
        data = TrainingData(train=rows, undesirable=[], heldout=[], fingerprint="test")
        engine = HFEngine(settings, real_files)  # its own copy: training dequantizes the model it gets
        losses = train_lora(settings, engine.model, engine.tokenizer, data, out, StatusFile(tmp_path / f"{dtype}.json"))
        assert len(losses) == 1 and losses[0]["loss"] == losses[0]["loss"]  # one finite step
        adapter = load_file(str(out / "adapter_model.safetensors"))
        saved[dtype] = {name: tensor.dtype for name, tensor in adapter.items()}
        first_losses[dtype] = losses[0]["loss"]
    assert saved["float32"] and saved["float32"] == saved["bfloat16"]
    assert first_losses["bfloat16"] == pytest.approx(first_losses["float32"], rel=0.05)
