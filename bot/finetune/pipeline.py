"""The training pipeline: dataset -> QLoRA -> loss curve -> eval gate -> registry.

A crash or a kill at any point leaves the registry as it was: the LoRA is written into the staging
directory, which the registry renames into a version only once everything in it is complete.
Progress goes to the status file (bot/training/status.py), which the serving bot polls.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.evaluation import load_eval_file
from bot.finetune.base_replies import CACHE_FILE as BASE_REPLIES
from bot.finetune.base_replies import BaseReplies
from bot.finetune.continued import parent_for, save_trained
from bot.finetune.gate import decide, gate_engine, gate_scores, gate_settings, serving_answerer
from bot.finetune.gate_cache import cached_regression, regression_key
from bot.finetune.qlora import lora_config, plot_losses, train_lora, training_dtype
from bot.finetune.retriever import train_retriever
from bot.finetune.self_replay import SelfAnswers
from bot.training.dataset import REGRESSION_FILE, build_training_data
from bot.training.status import StatusFile

log = logging.getLogger(__name__)
LOSS_PLOT = "loss.png"


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
    from bot.generation.hf_engine import HFEngine
    from bot.generation.model_files import prepare_model

    timings: dict[str, float] = {}
    clock = time.monotonic()
    status.update(phase="loading")
    files = prepare_model(settings)
    if examples is None or store is None:
        from bot.stores.opening import build_feedback, snapshot_examples

        # A copy: the bot's store must not be opened from a second process (bot.stores.example_server).
        examples = examples or snapshot_examples(settings)
        store = store or build_feedback(settings)
    engine = HFEngine(settings, files)
    timings["load_s"] = time.monotonic() - clock

    clock = time.monotonic()
    status.update(phase="dataset")
    registry_root = settings.data_dir / "loras"
    base = BaseReplies(engine, settings, files.fingerprint, registry_root / BASE_REPLIES)
    self_answers = None
    if settings.tuning.replay_size:  # replay rows in the base model's own words (bot/finetune/self_replay.py)
        self_answers = SelfAnswers(base, settings)
    parent = parent_for(active, settings)
    data = build_training_data(settings, examples, store, replay_answer=self_answers,
                               seen=parent.seen if parent else None)  # fmt: skip
    parent = parent if data.continued else None
    base.save()
    if not [row for row in data.train if row.source != "replay"]:
        raise RuntimeError("there are no good examples to train on: import, teach or upvote some first")
    timings["dataset_s"] = time.monotonic() - clock
    log.info("dataset %s: %s", data.fingerprint, data.counts)

    clock = time.monotonic()
    staging_dir.mkdir(parents=True, exist_ok=True)
    retriever = train_retriever(data, examples, store, staging_dir)  # before the gate, which retrieves with it
    timings["retriever_s"] = time.monotonic() - clock

    clock = time.monotonic()
    engine.restore_4bit_layout()  # replay answers were generated on it: train on the layers as loaded
    train_dtype = training_dtype(engine.model, settings)
    losses = train_lora(settings, engine.model, engine.tokenizer, data, staging_dir, status,
                        parent.path if parent else None)  # fmt: skip
    learned = save_trained(staging_dir, parent, data.trained)
    timings["train_s"] = time.monotonic() - clock
    del engine
    gc.collect()
    plot_losses(losses, staging_dir / LOSS_PLOT, f"{data.counts['rows']} rows, {settings.training.epochs:g} epochs, "
                f"lr {settings.training.learning_rate:g}, r {settings.training.lora_r}")  # fmt: skip
    status.update(loss_plot=str(staging_dir / LOSS_PLOT))

    clock = time.monotonic()
    judged = gate_settings(settings)
    engine = gate_engine(judged)
    key = regression_key(judged, files.fingerprint, regression_path, engine)
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
        "started_at": status.current.started_at,
        "finished_at": time.time(),
        "base_model": files.model_id,
        "base_fingerprint": files.fingerprint,
        "compared_with": active[0] if active else "base",
        "lora_config": {k: v for k, v in lora_config(settings).to_dict().items() if _plain(v)},
        "training": settings.training.model_dump(),
        "tuning": settings.tuning.model_dump(),
        "train_dtype": train_dtype,
        "dataset": {"fingerprint": data.fingerprint, "counts": data.counts},
        "continued_from": parent.version if parent else None,
        "pairs_learned": learned,
        "retriever": retriever,
        "losses": losses,
        "final_loss": losses[-1]["loss"] if losses else None,
        "eval": {"candidate": candidate.to_json(), "baseline": baseline.to_json()},
        "gate_engine": engine,
        "regression_key": key,  # its regression report serves the next run's gate (bot/finetune/gate_cache.py)
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


def run_pipeline(settings: Settings, staging_dir: Path, status: StatusFile, triggered_by: str) -> dict[str, Any]:
    """The whole run: train, gate, commit to the registry, promote when the gate passes.

    It promotes only if the LoRA it was compared with still serves: an admin's `lora use` or
    `lora rollback` made while it trained is not undone.
    """
    from bot.generation.model_files import prepare_model
    from bot.stores.lora_registry import LoraRegistry

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
        counts = manifest["dataset"]["counts"]
        how = (f"continued {manifest['continued_from']} on {counts['trained'] - counts['old_replayed']} new "
               f"example(s) and {counts['old_replayed']} old ones" if manifest["continued_from"]
               else f"trained from scratch on {counts['trained']} example(s)")  # fmt: skip
        summary = (
            f"LoRA {version.version} {verb}: {manifest['reason']}. Training ({how}) took "
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
