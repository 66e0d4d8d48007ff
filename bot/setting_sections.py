"""The settings' building blocks and the sections that need nothing from bot/config.py: a plain
section model, comma-separated lists, the secret marker, and the training and retention sections."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from pydantic.functional_validators import BeforeValidator
from pydantic_settings import NoDecode, SettingsConfigDict

# Platform credentials: never written to disk, never handed to the training process (it needs none).
SECRET = {"secret": True}


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):  # "a, b" from an environment variable
        return [part.strip() for part in value.split(",") if part.strip()]
    return value  # anything but a string or a list of strings is refused by the type check


# NoDecode: the env source would otherwise parse a list variable as JSON, not as "a,b".
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]


class Section(BaseModel):
    # A plain model, not BaseSettings: building a section (a default included) never reads env.
    model_config = SettingsConfigDict(extra="forbid", validate_assignment=True)


class TrainingSettings(Section):
    # Defaults measured on SmolLM2-135M (4-bit, CPU) with bench/train_eval.py; figures in docs/training.md.
    model_config = SettingsConfigDict(env_prefix="BOT_TRAIN_")
    epochs: float = Field(1.0, gt=0, description="passes over the training rows")
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="LoRA learning rate")
    lora_r: int = Field(16, ge=1, le=256, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scaling)")
    # No dropout by default: one epoch over a few dozen rows gives it little to regularize, and on a
    # CPU its random masks (one per wrapped layer and step) took a third of a training step.
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA layers")
    cpu_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="what a CPU trains in: `auto` is bfloat16 where the CPU multiplies it in hardware "
        "(AMX or AVX512-BF16), else float32",
    )
    target_modules: CommaList = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="comma-separated names of the modules the LoRA wraps",
    )
    batch_size: int = Field(4, ge=1, description="training rows per step")
    max_seq_len: int = Field(768, ge=64, description="tokens per training row; a longer prompt loses its start")
    holdout_fraction: float = Field(0.15, ge=0, lt=1, description="share of good examples held out for the gate")
    replay_size: int = Field(16, ge=0, description="rows of bot/data/general.jsonl mixed in against forgetting")
    replay_answers: Literal["self", "written"] = Field(
        "self", description="replay targets: `self` (the base model's own answers that state the facts) or `written`"
    )
    paraphrases: int = Field(2, ge=0, le=6, description="extra rows per example, its question rephrased by rule")
    history_share: float = Field(
        0.5, ge=0, le=1, description="share of rows asked after earlier, unrelated exchanges, as in a conversation"
    )
    missing_share: float = Field(
        0.15, ge=0, le=1, description="share of rephrased rows whose own example is left out of the prompt"
    )
    vote_scopes: CommaList = Field(
        [],
        description="scopes whose vote-made examples train the shared LoRA, e.g. `discord:123,slack:T1` "
        "(none: the Discord home server, the allowed Slack workspaces, the terminal; DMs with admins always)",
    )
    vote_min_voters: int = Field(3, ge=0, description="distinct upvoters (not the asker) that let any vote train")
    use_kto: bool = Field(False, description="also learn from downvoted replies and bad examples (TRL's KTOTrainer)")
    seed: int = Field(7, description="seed of the holdout split, the replay sample and training")
    # The eval gate promotes a new LoRA when neither score falls by more than its margin.
    gate_heldout_margin: float = Field(0.0, ge=0, le=1, description="gate: allowed drop of the held-out score")
    gate_regression_margin: float = Field(0.0, ge=0, le=1, description="gate: allowed drop of the regression score")
    keep_loaded: int = Field(3, ge=2, description="LoRA versions kept in memory (the active and previous at least)")
    runner: Literal["here", "worker"] = Field(
        "here", description="`here`: a child process of the bot asked; `worker`: a request `bot trainer` takes"
    )
    # A trainer that died (or never started) must not leave the asking admin waiting forever.
    worker_timeout_s: float = Field(
        3 * 3600.0, gt=0, description="`worker`: seconds a retrain waits for `bot trainer` to run it before giving up"
    )


class RetentionSettings(Section):
    # What stays bounded over months of use; the rows that trace a reply (exchange, reply, example
    # ids, LoRA version) are kept whatever these say.
    model_config = SettingsConfigDict(env_prefix="BOT_RETENTION_")
    prompt_days: int = Field(30, ge=0, description="days an exchange keeps its full prompt, then cleared (0: forever)")
    keep_candidates: int = Field(
        5, ge=0, description="LoRA candidates kept after a run besides the active, previous and loaded ones"
    )
    log_backups: int = Field(1, ge=0, description="earlier runs' train.log kept (train.log.1, …) beside the last run's")
