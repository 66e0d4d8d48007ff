"""Settings: env var names derived from the model, sources and priority, no surprise reads, README's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import (
    SECRET_ENV_VARS,
    SETTING_ENV_VARS,
    ConfigError,
    Settings,
    SlackSettings,
    TrainingSettings,
    load_settings,
)
from bot.settings_table import README, REGENERATE, readme_with_table, settings_table

# Every name that worked before the model derived them, with a value that differs from the default.
OLD_NAMES = {
    "BOT_DATA_DIR": ("data_dir", "elsewhere", Path("elsewhere")),
    "BOT_MODEL_CACHE": ("model_cache", "mc", Path("mc")),
    "BOT_RETRIEVAL_K": ("retrieval_k", "7", 7),
    "BOT_MAX_PENDING_CORRECTIONS": ("max_pending_corrections_per_user", "2", 2),
    "BOT_LOG_LEVEL": ("log_level", "debug", "DEBUG"),
    "BOT_TRAIN_EPOCHS": ("training.epochs", "2.5", 2.5),
    "BOT_TRAIN_LEARNING_RATE": ("training.learning_rate", "0.001", 0.001),
    "BOT_TRAIN_LORA_R": ("training.lora_r", "8", 8),
    "BOT_TRAIN_USE_KTO": ("training.use_kto", "true", True),
    "BOT_TRAIN_REPLAY_ANSWERS": ("training.replay_answers", "written", "written"),
    "BOT_TRAIN_KEEP_LOADED": ("training.keep_loaded", "4", 4),
    "SLACK_API_URL": ("slack.api_url", "http://127.0.0.1:1/api/", "http://127.0.0.1:1/api/"),
    "SLACK_PORT": ("slack.port", "3001", 3001),
    "SLACK_COMMAND": ("slack.command", "/helper", "/helper"),
    "SLACK_UP_EMOJI": ("slack.up_emoji", "tada, +1", ["tada", "+1"]),
    "SLACK_DOWN_EMOJI": ("slack.down_emoji", "x", ["x"]),
    "DISCORD_API_URL": ("discord.api_url", "http://127.0.0.1:2", "http://127.0.0.1:2"),
    "DISCORD_GATEWAY_URL": ("discord.gateway_url", "ws://127.0.0.1:3", "ws://127.0.0.1:3"),
    "DISCORD_GUILD_ID": ("discord.guild_id", "42", 42),
    "DISCORD_ADMIN_ROLE": ("discord.admin_role", "555", "555"),
    "DISCORD_SEED_REACTIONS": ("discord.seed_reactions", "false", False),
    "DISCORD_UP_EMOJI": ("discord.up_emoji", "yes,ok", ["yes", "ok"]),
    "DISCORD_DOWN_EMOJI": ("discord.down_emoji", "no", ["no"]),
}


def _get(settings: Settings, dotted: str) -> object:
    value: object = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def test_every_old_variable_name_still_sets_its_setting() -> None:
    settings = load_settings(env={var: raw for var, (_, raw, _) in OLD_NAMES.items()})
    assert {var: _get(settings, dotted) for var, (dotted, _, _) in OLD_NAMES.items()} == {
        var: want for var, (_, _, want) in OLD_NAMES.items()
    }
    tokens = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_APP_TOKEN": "xapp-1",
        "SLACK_SIGNING_SECRET": "s",
        "DISCORD_TOKEN": "d",
    }
    loaded = load_settings(env={**tokens, "SLACK_MODE": "http", "BOT_ADMINS": "slack:U1, discord:2"})
    assert (loaded.slack.bot_token, loaded.slack.app_token, loaded.slack.signing_secret) == ("xoxb-1", "xapp-1", "s")
    assert (loaded.discord.token, loaded.slack.mode, loaded.admins) == ("d", "http", ["slack:U1", "discord:2"])


def test_names_come_from_the_model_and_every_training_field_has_one() -> None:
    assert SETTING_ENV_VARS["retrieval_k"] == "BOT_RETRIEVAL_K"
    assert SETTING_ENV_VARS["max_pending_corrections_per_user"] == "BOT_MAX_PENDING_CORRECTIONS"
    assert {f"training.{name}" for name in TrainingSettings.model_fields} <= SETTING_ENV_VARS.keys()
    assert SETTING_ENV_VARS["training.paraphrases"] == "BOT_TRAIN_PARAPHRASES"
    assert load_settings(env={"BOT_TRAIN_TARGET_MODULES": "q_proj,v_proj"}).training.target_modules == [
        "q_proj",
        "v_proj",
    ]
    assert SECRET_ENV_VARS == ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DISCORD_TOKEN")
    assert len(set(SETTING_ENV_VARS.values())) == len(SETTING_ENV_VARS), "two settings share a variable"


def test_priority_is_defaults_file_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "bot.toml"
    toml.write_text('retrieval_k = 5\nmax_new_tokens = 100\n[slack]\ncommand = "/file"\nport = 4000\n')
    env = {"BOT_RETRIEVAL_K": "6", "SLACK_COMMAND": "/env", "BOT_TEMPERATURE": ""}  # empty: unset
    settings = load_settings(toml, env=env, retrieval_k=7, slack__port=4001)
    assert (settings.retrieval_k, settings.max_new_tokens, settings.temperature) == (7, 100, 0.0)
    assert (settings.slack.command, settings.slack.port, settings.slack.mode) == ("/env", 4001, "socket")
    # $BOT_CONFIG names the file, else ./bot.toml when there is one.
    assert load_settings(env={"BOT_CONFIG": str(toml)}).retrieval_k == 5
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}).slack.command == "/file"
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})


def test_bad_values_name_the_setting_and_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"slack\.port \(env SLACK_PORT\) = 'abc'"):
        load_settings(env={"SLACK_PORT": "abc"})
    with pytest.raises(ConfigError, match=r"training\.epochs \(env BOT_TRAIN_EPOCHS\) = '0'"):
        load_settings(env={"BOT_TRAIN_EPOCHS": "0"})
    toml = tmp_path / "bot.toml"
    toml.write_text("[slack]\nport = 0\n[training]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"slack\.port \(in .*bot\.toml\) = 0") as caught:
        load_settings(toml, env={"SLACK_COMMAND": "/fine"})
    assert "unknown setting 'training.bogus'" in str(caught.value)
    with pytest.raises(ConfigError, match="unknown setting 'nonsense'"):
        load_settings(env={}, nonsense=1)


def test_settings_from_explicit_values_never_read_the_environment_or_bot_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var, value in (("BOT_RETRIEVAL_K", "9"), ("SLACK_COMMAND", "/env"), ("BOT_TRAIN_SEED", "1")):
        monkeypatch.setenv(var, value)
    (tmp_path / "bot.toml").write_text("max_new_tokens = 99\n")
    monkeypatch.chdir(tmp_path)
    built = [
        Settings(),
        Settings.model_validate({}),
        Settings.model_validate_json("{}"),
        Settings().model_copy(update={"history_turns": 2}),
        load_settings(env={}, config_file=None, data_dir="d").model_copy(),
    ]
    assert [(s.retrieval_k, s.slack.command, s.training.seed) for s in built] == [(3, "/assistant", 7)] * 5
    assert [s.max_new_tokens for s in built] == [160, 160, 160, 160, 99]  # only load_settings reads ./bot.toml
    assert (SlackSettings().command, TrainingSettings().seed) == ("/assistant", 7)  # section defaults too
    assert load_settings(env={}).retrieval_k == 3  # env={} stands in for os.environ


def test_readme_table_is_the_generated_one() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "| `BOT_TRAIN_KEEP_LOADED` |" in settings_table()
    assert readme == readme_with_table(readme), f"README's settings table is stale: run `{REGENERATE}`"
