"""QLoRA through TRL on the 4-bit model: SFT, or KTO when there are downvoted replies; the loss curve."""

from __future__ import annotations

import gc
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.training.dataset import SEED, TrainingData, tokenize_row
from bot.training.status import StatusFile

# The LoRA besides its rank (training.lora_r): alpha 32 (the scale is alpha / r), on every projection of
# the decoder layers, and no dropout: one epoch over a few dozen rows gives it little to regularize, and
# on a CPU its random masks (one per wrapped layer and step) took a third of a training step.
LORA_ALPHA = 32
LORA_DROPOUT = 0.0
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_config(settings: Settings) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=settings.training.lora_r,
        lora_alpha=LORA_ALPHA,
        lora_dropout=LORA_DROPOUT,
        target_modules=list(TARGET_MODULES),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _progress_callback(status: StatusFile, losses: list[dict[str, float]]) -> Any:
    from transformers import TrainerCallback

    class StatusCallback(TrainerCallback):  # type: ignore[misc]
        """Writes step, loss and ETA to the status file after every optimizer step."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()
            status.update(phase="training", step=0, total_steps=state.max_steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return
            step = state.global_step
            losses.append({"step": step, "loss": float(logs["loss"]), "epoch": float(state.epoch or 0)})
            elapsed = time.monotonic() - self.started
            eta = elapsed / step * (state.max_steps - step) if step else None
            status.update(step=step, total_steps=state.max_steps, loss=float(logs["loss"]),
                          epoch=round(float(state.epoch or 0), 3), eta_s=eta)  # fmt: skip

    return StatusCallback()


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX512-BF16 dot products)."""
    import torch

    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def cpu_training_dtype(settings: Settings) -> str:
    """What the dequantized base computes in when training on a CPU: bfloat16 or float32."""
    chosen = settings.tuning.cpu_dtype
    if chosen == "auto":
        return "bfloat16" if cpu_has_bf16_matmul() else "float32"
    return chosen


def training_dtype(model: Any, settings: Settings) -> str:
    """What `train_lora` computes in on this model: QLoRA's bfloat16 on a GPU; on a CPU, a 4-bit
    model's `cpu_training_dtype`, any other model its own float32."""
    if str(model.device) != "cpu":
        return "bfloat16"
    return cpu_training_dtype(settings) if getattr(model, "is_quantized", False) else "float32"


def dequantized_for_cpu(model: Any, settings: Settings) -> Any:
    """The 4-bit model's weights as its 4-bit layers compute with (NF4 dequantized once, not at every
    matmul: about 25% faster a step on a CPU, where memory is not the constraint for this model),
    in bfloat16 where `cpu_training_dtype` says so: what QLoRA on a GPU computes with (compute dtype
    bf16). AMX multiplies bf16 about 10x faster than float32; with no LoRA dropout, a retrain's
    training took 69 s against 141 s (docs/training.md)."""
    import torch

    model = model.dequantize()
    return model.to(torch.bfloat16) if cpu_training_dtype(settings) == "bfloat16" else model


def train_lora(
    settings: Settings,
    model: Any,
    tokenizer: Any,
    data: TrainingData,
    out_dir: Path,
    status: StatusFile,
    parent: Path | None = None,
) -> list[dict[str, float]]:
    """QLoRA on the given 4-bit model through TRL, a new LoRA or the one in `parent` trained further
    (bot/finetune/continued.py); saves the LoRA into out_dir; returns the losses."""
    from datasets import Dataset
    from peft import PeftModel, prepare_model_for_kbit_training

    t, tuning = settings.training, settings.tuning
    losses: list[dict[str, float]] = []
    on_cpu = str(model.device) == "cpu"
    dtype = training_dtype(model, settings)
    if on_cpu and getattr(model, "is_quantized", False):
        model = dequantized_for_cpu(model, settings)
    elif not on_cpu:
        # Gradient checkpointing only saves memory, which a small model does not need, and costs time.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if parent is not None:
        model = PeftModel.from_pretrained(model, str(parent), is_trainable=True)
    scratch = tempfile.TemporaryDirectory(prefix="trainer-")  # the Trainer's own files; we save the LoRA
    common: dict[str, Any] = {
        "output_dir": scratch.name,
        "num_train_epochs": t.epochs,
        "learning_rate": t.learning_rate,
        "per_device_train_batch_size": tuning.batch_size,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": SEED,
        "data_seed": SEED,
        "gradient_checkpointing": False,
        "use_cpu": on_cpu,
        "bf16": dtype == "bfloat16",  # autocast
        "max_length": tuning.max_seq_len,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    if tuning.use_kto and data.undesirable:
        trainer_class, config, rows = _kto_parts(tokenizer, data, settings, common)
    else:
        from trl import SFTConfig, SFTTrainer

        trainer_class, config = SFTTrainer, SFTConfig(**common, completion_only_loss=True, dataset_num_proc=None)
        rows = [tokenize_row(tokenizer, row, settings) for row in data.train]
    trainer = trainer_class(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=None if parent is not None else lora_config(settings),
        callbacks=[_progress_callback(status, losses)],
    )
    try:
        trainer.train()
        trainer.model.save_pretrained(str(out_dir))
    finally:
        del trainer
        gc.collect()
        scratch.cleanup()
    return losses


def _kto_parts(
    tokenizer: Any, data: TrainingData, settings: Settings, common: dict[str, Any]
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """KTO on good (desirable) and downvoted (undesirable) rows, pre-tokenized in the serving layout:
    (trainer class, its config, the rows)."""
    from trl import KTOConfig, KTOTrainer

    class ServingLayoutKTOTrainer(KTOTrainer):  # type: ignore[misc]
        # Our rows are tokenized by bot.prompt (special tokens in user text stay text); TRL's own
        # preparation would render the chat template itself. Keep only its KL pairing: each
        # completion is also scored after its batch neighbour's prompt (rotate by one per batch).
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            if not self.calculate_KL:
                return dataset

            def rotate(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                completions = batch["completion_ids"]
                return {**batch, "KL_completion_ids": [completions[-1], *completions[:-1]]}

            return dataset.map(rotate, batched=True, batch_size=args.per_device_train_batch_size)

    rows = []
    for row in data.train + data.undesirable:
        ids = tokenize_row(tokenizer, row, settings)
        cut = ids["completion_mask"].index(1)
        rows.append({"prompt_ids": ids["input_ids"][:cut], "completion_ids": ids["input_ids"][cut:],
                     "label": row.desirable})  # fmt: skip
    # The KL estimate pairs neighbours in a fixed order, so the shuffle happens here, seeded.
    random.Random(SEED).shuffle(rows)
    config = KTOConfig(**{**common, "per_device_train_batch_size": max(2, settings.tuning.batch_size)})
    return ServingLayoutKTOTrainer, config, rows


def plot_losses(losses: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, values = [p["step"] for p in losses], [p["loss"] for p in losses]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, values, marker=".", linewidth=0.8, alpha=0.5, label="per step")
    # Batches mix examples and general replay, whose losses differ: the running mean shows the trend.
    window = 5
    smooth = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
              for i in range(len(values))]  # fmt: skip
    ax.plot(steps, smooth, linewidth=2, label=f"mean of {window}")
    ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (answer tokens)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
