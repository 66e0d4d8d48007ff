"""The settings' building blocks and the sections that need nothing from bot/config.py: a plain
section model, comma-separated lists, the secret marker, and the training, tuning and retention sections."""

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
    vote_scopes: CommaList = Field(
        [],
        description="scopes whose vote-made examples train the shared LoRA, e.g. `discord:123,slack:T1` "
        "(none: the Discord home server, the allowed Slack workspaces, the terminal; DMs with admins always)",
    )
    vote_min_voters: int = Field(3, ge=0, description="distinct upvoters (not the asker) that let any vote train")
    runner: Literal["here", "worker"] = Field(
        "here", description="`here`: a child process of the bot asked; `worker`: a request `bot trainer` takes"
    )
    # A trainer that died (or never started) must not leave the asking admin waiting forever.
    worker_timeout_s: float = Field(
        3 * 3600.0, gt=0, description="`worker`: seconds a retrain waits for `bot trainer` to run it before giving up"
    )


class TuningSettings(Section):
    """Values chosen by measurement (bench/, figures in docs/training.md, docs/decoding.md,
    docs/cpu_speed.md), not by an operator: README's table leaves them out. The benchmarks and tests
    vary them (`[tuning]` in TOML, `BOT_TUNING_*`, `tuning__name=` in code)."""

    model_config = SettingsConfigDict(env_prefix="BOT_TUNING_")
    # The transformers engine (llama.cpp and vLLM have their own): bench/gpu_check.py compares them.
    quantize: Literal["4bit", "none"] = Field("4bit", description="`4bit` (bitsandbytes NF4, CPU or CUDA) or `none`")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto`, `cpu` or `cuda`")
    # The llama.cpp engine's weights (docs/cpu_speed.md weighs them): the shipped Q4_1 GGUF as it is,
    # or rewritten once in the model cache as F16 (Q4_1's values exactly) or Q8_0.
    served_weights: Literal["f16", "q8_0", "q4_1"] = Field(
        "f16", description="the GGUF llama.cpp serves: `f16`, `q8_0` or the shipped `q4_1`"
    )
    # What a reply is written from: bench/sweep.py, bench/retrieval.py.
    retrieval_k: int = Field(3, ge=0, le=50, description="examples put in the prompt")
    min_similarity: float = Field(0.35, ge=-1, le=1, description="cosine similarity floor for retrieved examples")
    history_turns: int = Field(3, ge=0, le=200, description="exchanges of a conversation kept in the prompt")
    # How it is written: bench/decoding.py. Against greedy loops, on the reply only (the prompt's facts
    # stay free to copy).
    temperature: float = Field(0.0, ge=0, le=5, description="0 is greedy (reproducible)")
    no_repeat_ngram: int = Field(
        4, ge=0, le=64, description="a reply never repeats one of its own n-grams of this size (0: off)"
    )
    repetition_penalty: float = Field(
        1.05, ge=1.0, le=2.0, description="above 1, tokens the reply already used are less likely (1.0: off)"
    )
    answer_bias: float = Field(
        2.0, ge=0, le=20, description="logit bonus for the best retrieved answer's tokens (0: off; docs/decoding.md)"
    )
    lora_for: Literal["examples", "all"] = Field(
        "examples", description="the LoRA writes `examples` (replies whose prompt holds an example) or `all` replies"
    )
    # Training runs: bench/train_eval.py.
    batch_size: int = Field(4, ge=1, description="training rows per step")
    max_seq_len: int = Field(768, ge=64, description="tokens per training row; a longer prompt loses its start")
    holdout_fraction: float = Field(0.15, ge=0, lt=1, description="share of good examples held out for the gate")
    replay_size: int = Field(16, ge=0, description="rows of bot/data/general.jsonl mixed in against forgetting")
    paraphrases: int = Field(2, ge=0, le=6, description="extra rows per example, its question rephrased by rule")
    use_kto: bool = Field(False, description="also learn from downvoted replies and bad examples (TRL's KTOTrainer)")
    continue_training: bool = Field(
        True, description="a retrain continues the serving LoRA on what is new since it trained (false: from scratch)"
    )
    cpu_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="what a CPU trains in: `auto` is bfloat16 where the CPU multiplies it in hardware "
        "(AMX or AVX512-BF16), else float32",
    )
    # The eval gate promotes a new LoRA when neither score falls by more than its margin.
    gate_heldout_margin: float = Field(0.0, ge=0, le=1, description="gate: allowed drop of the held-out score")
    gate_regression_margin: float = Field(0.0, ge=0, le=1, description="gate: allowed drop of the regression score")
    keep_loaded: int = Field(3, ge=2, description="LoRA versions kept in memory (the active and previous at least)")
    # Showing a reply, within the platforms' rate limits (docs/slack.md, docs/discord.md); the tests
    # shorten them, and pick each of Slack's two ways of showing a reply.
    slack_streaming: Literal["auto", "native", "edit"] = Field(
        "auto", description="`native`: chat.startStream in threads; `edit`: chat.update; `auto`: native, else edit"
    )
    # chat.update is rate tier 3 (about 50 a minute).
    slack_stream_interval_s: float = Field(1.2, ge=0.0, description="Slack: seconds between edits of a reply")
    discord_stream_interval_s: float = Field(1.0, ge=0.0, description="Discord: seconds between edits of a reply")
    # Discord allows about 5 edits per 5 s per channel; every reply streaming in a channel shares these.
    discord_edits_per_minute: float = Field(
        60.0, gt=0, description="Discord: edits per minute per channel, all replies"
    )
    discord_edit_burst: int = Field(5, ge=1, description="Discord: edits a channel may spend at once")


# Old setting names -> the names now, as TOML keys and (prefix + name) as environment variables
# (`training.batch_size`: BOT_TRAIN_BATCH_SIZE): an old name sets the new setting where that is not
# set itself (bot/config.py). The one table of renames.
RENAMED_SETTINGS: dict[str, str] = {
    "backend": "engine",
    "max_pending_corrections": "max_pending_corrections_per_user",  # its variable before the name grew
    # Measured values moved out of the operator's settings (issue 30): a value set for them still holds.
    "quantize": "tuning.quantize",
    "device": "tuning.device",
    "retrieval_k": "tuning.retrieval_k",
    "min_similarity": "tuning.min_similarity",
    "history_turns": "tuning.history_turns",
    "temperature": "tuning.temperature",
    "no_repeat_ngram": "tuning.no_repeat_ngram",
    "repetition_penalty": "tuning.repetition_penalty",
    "answer_bias": "tuning.answer_bias",
    "lora_for": "tuning.lora_for",
    "training.batch_size": "tuning.batch_size",
    "training.max_seq_len": "tuning.max_seq_len",
    "training.holdout_fraction": "tuning.holdout_fraction",
    "training.replay_size": "tuning.replay_size",
    "training.paraphrases": "tuning.paraphrases",
    "training.use_kto": "tuning.use_kto",
    "training.cpu_dtype": "tuning.cpu_dtype",
    "training.gate_heldout_margin": "tuning.gate_heldout_margin",
    "training.gate_regression_margin": "tuning.gate_regression_margin",
    "training.keep_loaded": "tuning.keep_loaded",
    "slack.streaming": "tuning.slack_streaming",
    "slack.stream_interval_s": "tuning.slack_stream_interval_s",
    "discord.stream_interval_s": "tuning.discord_stream_interval_s",
    "discord.edits_per_minute": "tuning.discord_edits_per_minute",
    "discord.edit_burst": "tuning.discord_edit_burst",
}
# Settings whose value is fixed in the code now, beside the code that uses it -> why, for the warning.
# Named in a file or variable they are ignored with a warning, not refused: each was an experiment's
# value that the measurements settled, and an old bot.toml that names one (most often at the very value
# now fixed) should not stop the bot at an upgrade. A name never known stays an error (a typo).
REMOVED_SETTINGS: dict[str, str] = {
    "example_layout": "the prompt has one layout, the examples right before the message (bot/prompt.py)",
    "dedup_similarity": "fixed in bot/stores/examples.py (DEDUP_SIMILARITY)",
    "history_similarity": "fixed in bot/retrieval.py (HISTORY_SIMILARITY)",
    "training.lora_alpha": "fixed in bot/finetune/qlora.py (LORA_ALPHA)",
    "training.lora_dropout": "no dropout: fixed in bot/finetune/qlora.py (LORA_DROPOUT)",
    "training.target_modules": "fixed in bot/finetune/qlora.py (TARGET_MODULES)",
    "training.seed": "fixed in bot/training/dataset.py (SEED)",
    "training.replay_answers": "replay rows are always the base model's own answers (bot/finetune/self_replay.py)",
    "training.history_share": "fixed in bot/training/dataset.py (HISTORY_SHARE)",
    "training.missing_share": "fixed in bot/training/dataset.py (MISSING_SHARE)",
}


class RetentionSettings(Section):
    # What stays bounded over months of use; the rows that trace a reply (exchange, reply, example
    # ids, LoRA version) are kept whatever these say.
    model_config = SettingsConfigDict(env_prefix="BOT_RETENTION_")
    prompt_days: int = Field(30, ge=0, description="days an exchange keeps its full prompt, then cleared (0: forever)")
    keep_candidates: int = Field(
        5, ge=0, description="LoRA candidates kept after a run besides the active, previous and loaded ones"
    )
    log_backups: int = Field(1, ge=0, description="earlier runs' train.log kept (train.log.1, …) beside the last run's")


class WebSettings(Section):
    # The admin console (bot/web/): off unless `bot web` runs or `port` is set for `bot run`.
    model_config = SettingsConfigDict(env_prefix="BOT_WEB_")
    host: str = Field("127.0.0.1", description="address the console binds (loopback: only this machine)")
    port: int = Field(0, ge=0, le=65535, description="`bot run` serves the admin console on this port (0: not)")
    token: str = Field("", description="the console's sign-in secret (none: only `bot web`'s one-time link)",
                       json_schema_extra=SECRET)  # fmt: skip
    session_hours: float = Field(8.0, gt=0, le=24 * 7, description="how long a console sign-in lasts")
