"""The training pipeline, run as its own process: dataset -> QLoRA -> loss curve -> eval gate -> registry.

    python -m bot.training --data-dir DIR --status-file FILE --staging-dir DIR --triggered-by WHO [--config FILE]

Progress goes to the status file (JSON, replaced atomically), which the serving bot polls:
    phase        "loading" | "dataset" | "training" | "evaluating" | "committing" | "done" | "failed"
    step, total_steps, loss, eta_s, epoch   while training; done, total while evaluating
    summary, error, loss_plot, version, promoted, reason, manifest   at the end
A crash or a kill at any point leaves the registry as it was: the LoRA is written into the staging
directory, which the registry renames into a version only once everything in it is complete.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.base_replies import CACHE_FILE as BASE_REPLIES
from bot.base_replies import BaseReplies
from bot.config import Settings, load_settings
from bot.dataset import REGRESSION_FILE, Pair, TrainingData, build_training_data, tokenize_row
from bot.evaluation import EvalReport, evaluate, key_token_recall, load_eval_file
from bot.gate_cache import cached_regression, regression_key
from bot.self_replay import SelfAnswers

log = logging.getLogger(__name__)
LOSS_PLOT = "loss.png"


class StatusFile:
    """The run's progress as one JSON object, replaced atomically so a reader never sees half of it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {"pid": os.getpid(), "started_at": time.time()}

    def update(self, **fields: Any) -> None:
        self.data.update(fields, updated_at=time.time())
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(self.data, ensure_ascii=False, default=str))
        os.replace(temp, self.path)


# the gate's measures --------------------------------------------------------------------------


@dataclass(frozen=True)
class GateScores:
    heldout: float | None  # mean key-token recall; None without held-out examples
    regression: float
    heldout_replies: list[dict[str, Any]]
    regression_report: EvalReport

    def to_json(self) -> dict[str, Any]:
        return {
            "heldout_recall": None if self.heldout is None else round(self.heldout, 4),
            "regression_accuracy": round(self.regression, 4),
            "regression_hits": self.regression_report.hits,
            "regression_total": self.regression_report.total,
            "heldout_replies": self.heldout_replies,
            "regression_misses": self.regression_report.misses,
        }


AnswerFn = Callable[[str], str]


def gate_scores(
    answer: AnswerFn,
    heldout: list[Pair],
    regression_path: Path,
    progress: Callable[[int, int], None] | None = None,
    regression: EvalReport | None = None,
) -> GateScores:
    """Held-out recall and the regression report; `regression`, when given, is a cached report."""
    regression_items = [] if regression is not None else load_eval_file(regression_path)
    total = len(heldout) + len(regression_items)
    replies: list[dict[str, Any]] = []
    for done, pair in enumerate(heldout, start=1):
        reply = answer(pair.question)
        replies.append({"question": pair.question, "reference": pair.answer, "reply": reply,
                        "recall": round(key_token_recall(reply, pair.answer), 4)})  # fmt: skip
        if progress:
            progress(done, total)
    report = regression or evaluate(
        answer, regression_items, (lambda d, _t: progress(len(heldout) + d, total)) if progress else None
    )
    mean = sum(r["recall"] for r in replies) / len(replies) if replies else None
    return GateScores(mean, report.accuracy, replies, report)


def decide(candidate: GateScores, baseline: GateScores, settings: Settings) -> tuple[bool, str]:
    """Promote iff the candidate is no worse than the baseline on both checks, within the margins."""
    t = settings.training
    problems: list[str] = []
    lines: list[str] = []
    if candidate.heldout is not None and baseline.heldout is not None:
        lines.append(f"held-out recall {candidate.heldout:.0%} vs {baseline.heldout:.0%}")
        if candidate.heldout < baseline.heldout - t.gate_heldout_margin:
            problems.append(f"held-out recall fell below {baseline.heldout - t.gate_heldout_margin:.0%}")
    else:
        lines.append("no held-out examples (too few examples to hold any out)")
    lines.append(
        f"regression {candidate.regression_report.hits}/{candidate.regression_report.total} vs "
        f"{baseline.regression_report.hits}/{baseline.regression_report.total}"
    )
    if candidate.regression < baseline.regression - t.gate_regression_margin:
        problems.append(f"regression accuracy fell below {baseline.regression - t.gate_regression_margin:.0%}")
    numbers = "; ".join(lines)
    if problems:
        return False, f"{', '.join(problems)} ({numbers})"
    return True, f"no worse than the serving model ({numbers})"


# training -------------------------------------------------------------------------------------


def lora_config(settings: Settings) -> Any:
    from peft import LoraConfig

    t = settings.training
    return LoraConfig(
        r=t.lora_r,
        lora_alpha=t.lora_alpha,
        lora_dropout=t.lora_dropout,
        target_modules=list(t.target_modules),
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


def train_lora(
    settings: Settings, model: Any, tokenizer: Any, data: TrainingData, out_dir: Path, status: StatusFile
) -> list[dict[str, float]]:
    """QLoRA on the given 4-bit model through TRL; saves the LoRA into out_dir; returns the losses."""
    from datasets import Dataset
    from peft import prepare_model_for_kbit_training

    t = settings.training
    losses: list[dict[str, float]] = []
    if str(model.device) == "cpu":
        # The same weights as the 4-bit layers compute with (NF4 dequantized once, not at every
        # matmul): about 25% faster a step on CPU, where memory is not the constraint for this model.
        model = model.dequantize()
    else:
        # Gradient checkpointing only saves memory, which a small model does not need, and costs time.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    scratch = tempfile.TemporaryDirectory(prefix="trainer-")  # the Trainer's own files; we save the LoRA
    common: dict[str, Any] = {
        "output_dir": scratch.name,
        "num_train_epochs": t.epochs,
        "learning_rate": t.learning_rate,
        "per_device_train_batch_size": t.batch_size,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": t.seed,
        "data_seed": t.seed,
        "gradient_checkpointing": False,
        "use_cpu": str(model.device) == "cpu",
        "bf16": str(model.device) != "cpu",
        "max_length": t.max_seq_len,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    callback = _progress_callback(status, losses)
    if t.use_kto and data.undesirable:
        trainer = _kto_trainer(model, tokenizer, data, settings, common, callback)
    else:
        from trl import SFTConfig, SFTTrainer

        rows = [tokenize_row(tokenizer, row, settings) for row in data.train]
        config = SFTConfig(**common, completion_only_loss=True, dataset_num_proc=None)
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora_config(settings),
            callbacks=[callback],
        )
    try:
        trainer.train()
        trainer.model.save_pretrained(str(out_dir))
    finally:
        del trainer
        gc.collect()
        scratch.cleanup()
    return losses


def _kto_trainer(
    model: Any, tokenizer: Any, data: TrainingData, settings: Settings, common: dict[str, Any], callback: Any
) -> Any:
    """KTO on good (desirable) and downvoted (undesirable) rows, pre-tokenized in the serving layout."""
    from datasets import Dataset
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
    random.Random(settings.training.seed).shuffle(rows)
    config = KTOConfig(**{**common, "per_device_train_batch_size": max(2, settings.training.batch_size)})
    return ServingLayoutKTOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
        callbacks=[callback],
    )


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


# the serving path, for the gate ---------------------------------------------------------------


GATE_MAX_NEW_TOKENS = 48


def gate_settings(settings: Settings) -> Settings:
    """The serving settings, replies cut at GATE_MAX_NEW_TOKENS: the facts the gate looks for come in
    a reply's first sentence, and a general question can make the small model ramble to the limit."""
    return settings.model_copy(update={"max_new_tokens": min(settings.max_new_tokens, GATE_MAX_NEW_TOKENS)})


@contextmanager
def serving_answerer(settings: Settings, files: Any, examples: Any, base_replies: Path | None) -> Any:
    """Yields (answer(question) -> text, use(version, path | None)) on a fresh 4-bit model.

    Answers go through the bot's own Core (retrieval, prompt builder, generation worker), so the
    gate measures exactly what users would get; its exchanges go to a throwaway store. What the
    base model writes is read back from `base_replies` when an earlier run wrote it already (None:
    every reply is generated).
    """
    from bot.core import Core
    from bot.feedback import FeedbackStore
    from bot.generation import GenerationService, HFBackend
    from bot.types import ALL_SCOPES, ConversationKey, Message

    current: list[tuple[str, Path] | None] = [None]
    backend: Any = HFBackend(settings, files, lora_source=lambda: current[0])
    if base_replies is not None:
        backend = BaseReplies(backend, settings, files.fingerprint, base_replies)
    service = GenerationService(backend)
    with tempfile.TemporaryDirectory(prefix="gate-") as scratch:
        store = FeedbackStore(Path(scratch) / "feedback.sqlite3")
        core = Core(settings, service, examples, store)

        def answer(question: str) -> str:
            conversation = ConversationKey("gate", uuid.uuid4().hex)  # each question stands alone
            # Training uses every scope's examples, so the gate does too.
            return core.answer(Message(conversation, "gate", question, scope=ALL_SCOPES)).text

        def use(lora: tuple[str, Path] | None) -> None:
            current[0] = lora
            service.request_sync().result(timeout=300)

        try:
            yield answer, use
        finally:
            service.close()
            store.close()
            if isinstance(backend, BaseReplies):
                backend.save()


# the pipeline ---------------------------------------------------------------------------------


def train_candidate(
    settings: Settings,
    staging_dir: Path,
    triggered_by: str,
    status: StatusFile,
    active: tuple[str, Path] | None,
    examples: Any = None,
    store: Any = None,
    regression_path: Path = REGRESSION_FILE,
) -> dict[str, Any]:
    """Train into staging_dir and gate it against `active` (None: the base model); returns the manifest."""
    from bot.generation import HFBackend
    from bot.model_files import prepare_model

    timings: dict[str, float] = {}
    clock = time.monotonic()
    status.update(phase="loading")
    files = prepare_model(settings)
    if examples is None or store is None:
        from bot.app import build_feedback, snapshot_examples

        # A copy: the bot's store must not be opened from a second process (bot.control).
        examples = examples or snapshot_examples(settings)
        store = store or build_feedback(settings)
    backend = HFBackend(settings, files)
    timings["load_s"] = time.monotonic() - clock

    clock = time.monotonic()
    status.update(phase="dataset")
    registry_root = settings.data_dir / "loras"
    base = BaseReplies(backend, settings, files.fingerprint, registry_root / BASE_REPLIES)
    self_answers = None
    if settings.training.replay_answers == "self" and settings.training.replay_size:
        self_answers = SelfAnswers(base, settings)
    data = build_training_data(settings, examples, store, replay_answer=self_answers)
    base.save()
    if not [row for row in data.train if row.source != "replay"]:
        raise RuntimeError("there are no good examples to train on: import, teach or upvote some first")
    timings["dataset_s"] = time.monotonic() - clock
    log.info("dataset %s: %s", data.fingerprint, data.counts)

    clock = time.monotonic()
    staging_dir.mkdir(parents=True, exist_ok=True)
    backend.restore_4bit_layout()  # replay answers were generated on it: train on the layers as loaded
    losses = train_lora(settings, backend.model, backend.tokenizer, data, staging_dir, status)
    timings["train_s"] = time.monotonic() - clock
    del backend
    gc.collect()
    plot_losses(losses, staging_dir / LOSS_PLOT, f"{data.counts['rows']} rows, {settings.training.epochs:g} epochs, "
                f"lr {settings.training.learning_rate:g}, r {settings.training.lora_r}")  # fmt: skip
    status.update(loss_plot=str(staging_dir / LOSS_PLOT))

    clock = time.monotonic()
    judged = gate_settings(settings)
    key = regression_key(judged, files.fingerprint, regression_path)
    cached = cached_regression(active, key)
    questions = len(load_eval_file(regression_path))
    baseline_total = len(data.heldout) + (0 if cached else questions)
    status.update(phase="evaluating", done=0, total=baseline_total + len(data.heldout) + questions)
    offset = [0]

    def progress(done: int, total: int) -> None:
        status.update(done=offset[0] + done)

    with serving_answerer(judged, files, examples, registry_root / BASE_REPLIES) as (answer, use):
        use(active)
        baseline = gate_scores(answer, data.heldout, regression_path, progress, regression=cached)
        offset[0] = baseline_total
        use(("candidate", staging_dir))
        candidate = gate_scores(answer, data.heldout, regression_path, progress)
    timings["gate_s"] = time.monotonic() - clock
    promote, reason = decide(candidate, baseline, settings)
    return {
        "triggered_by": triggered_by,
        "started_at": status.data["started_at"],
        "finished_at": time.time(),
        "base_model": files.model_id,
        "base_fingerprint": files.fingerprint,
        "compared_with": active[0] if active else "base",
        "example_layout": settings.example_layout,
        "lora_config": {k: v for k, v in lora_config(settings).to_dict().items() if _plain(v)},
        "training": settings.training.model_dump(),
        "dataset": {"fingerprint": data.fingerprint, "counts": data.counts},
        "losses": losses,
        "final_loss": losses[-1]["loss"] if losses else None,
        "eval": {"candidate": candidate.to_json(), "baseline": baseline.to_json()},
        "regression_key": key,  # its regression report serves the next run's gate (bot/gate_cache.py)
        "baseline_regression_cached": cached is not None,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "promote": promote,
        "reason": reason,
    }


def _plain(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def run_pipeline(settings: Settings, staging_dir: Path, status_path: Path | None, triggered_by: str) -> dict[str, Any]:
    """The whole run: train, gate, commit to the registry, promote when the gate passes.

    It promotes only if the LoRA it was compared with still serves: an admin's `lora use` or
    `lora rollback` made while it trained is not undone.
    """
    from bot.lora_registry import LoraRegistry
    from bot.model_files import prepare_model

    status = StatusFile(status_path)
    try:
        registry = LoraRegistry.open(settings, prepare_model(settings).fingerprint)
        active = registry.active_lora()
        manifest = train_candidate(settings, staging_dir, triggered_by, status, active)
        status.update(phase="committing")
        version = registry.commit(staging_dir, manifest)
        compared_with = active[0] if active else None
        promoted = bool(manifest["promote"]) and registry.promote_if_active(
            version.version, compared_with, by=triggered_by
        )
        plot = registry.path_for(version.version) / LOSS_PLOT
        verb = "promoted and now serving" if promoted else "kept as a candidate"
        summary = (
            f"LoRA {version.version} {verb}: {manifest['reason']}. Training took "
            f"{manifest['timings']['train_s']:.0f} s ({len(manifest['losses'])} steps, final loss "
            f"{manifest['final_loss']:.3f})."
        )
        if manifest["promote"] and not promoted:
            summary += (
                f" It was not promoted: an admin changed the serving LoRA during training (from "
                f"{compared_with or 'the base model'} to {registry.active_pointer() or 'the base model'}), "
                "and it was compared with the former."
            )
        if not promoted:
            summary += f" An admin can serve it anyway with `lora use {version.version}`."
        status.update(phase="done", summary=summary, version=version.version, promoted=promoted,
                      reason=manifest["reason"], loss_plot=str(plot), manifest=manifest, eta_s=0)  # fmt: skip
        return manifest
    except BaseException as exc:
        status.update(phase="failed", error=f"{type(exc).__name__}: {exc}")
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.training", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--status-file", type=Path, required=True)
    parser.add_argument("--staging-dir", type=Path, required=True)
    parser.add_argument("--triggered-by", required=True)
    parser.add_argument("--config", type=Path, help="a TOML settings file")
    parser.add_argument("--settings", help="the serving bot's settings as JSON: a file, or - for stdin (no secrets)")
    args = parser.parse_args(argv)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the base model is local
    if args.settings:  # exactly what the bot that asked for this run is configured with
        text = sys.stdin.read() if args.settings == "-" else Path(args.settings).read_text()
        settings = Settings.model_validate_json(text)
    else:
        settings = load_settings(args.config, data_dir=str(args.data_dir))
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        manifest = run_pipeline(settings, args.staging_dir, args.status_file, args.triggered_by)
    except Exception:
        log.exception("training failed; the LoRA serving before keeps serving")
        return 1
    log.info("%s", manifest["reason"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
