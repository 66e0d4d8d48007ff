"""Settings: env var names derived from the model, sources and priority, no surprise reads, README's table."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.config import (
    REMOVED_SETTINGS,
    RENAMED_SETTINGS,
    SECRET_ENV_VARS,
    SETTING_ENV_VARS,
    ConfigError,
    Settings,
    SlackSettings,
    TrainingSettings,
    TuningSettings,
    dotted_env_var,
    load_settings,
)
from bot.settings_table import README, REGENERATE, readme_with_table, settings_table

# Every name that worked before the model derived them, with a value that differs from the default.
OLD_NAMES = {
    "BOT_DATA_DIR": ("data_dir", "elsewhere", Path("elsewhere")),
    "BOT_MODEL_CACHE": ("model_cache", "mc", Path("mc")),
    "BOT_RETRIEVAL_K": ("tuning.retrieval_k", "7", 7),
    "BOT_MAX_PENDING_CORRECTIONS": ("max_pending_corrections_per_user", "2", 2),
    "BOT_LOG_LEVEL": ("log_level", "debug", "DEBUG"),
    "BOT_TRAIN_EPOCHS": ("training.epochs", "2.5", 2.5),
    "BOT_TRAIN_LEARNING_RATE": ("training.learning_rate", "0.001", 0.001),
    "BOT_TRAIN_LORA_R": ("training.lora_r", "8", 8),
    "BOT_TRAIN_USE_KTO": ("tuning.use_kto", "true", True),
    "BOT_TRAIN_KEEP_LOADED": ("tuning.keep_loaded", "4", 4),
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
    assert SETTING_ENV_VARS["max_new_tokens"] == "BOT_MAX_NEW_TOKENS"
    assert SETTING_ENV_VARS["max_pending_corrections_per_user"] == "BOT_MAX_PENDING_CORRECTIONS_PER_USER"
    assert {f"training.{name}" for name in TrainingSettings.model_fields} <= SETTING_ENV_VARS.keys()
    assert SETTING_ENV_VARS["tuning.paraphrases"] == "BOT_TUNING_PARAPHRASES"
    assert load_settings(env={"BOT_TRAIN_VOTE_SCOPES": "discord:1,slack:T1"}).training.vote_scopes == [
        "discord:1",
        "slack:T1",
    ]
    assert SECRET_ENV_VARS == (
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "DISCORD_TOKEN",
        "BOT_WEB_TOKEN",
    )
    assert len(set(SETTING_ENV_VARS.values())) == len(SETTING_ENV_VARS), "two settings share a variable"


def test_priority_is_defaults_file_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "bot.toml"
    toml.write_text('max_new_tokens = 100\n[slack]\ncommand = "/file"\nport = 4000\n[tuning]\nretrieval_k = 5\n')
    env = {"BOT_TUNING_RETRIEVAL_K": "6", "SLACK_COMMAND": "/env", "BOT_TUNING_TEMPERATURE": ""}  # empty: unset
    settings = load_settings(toml, env=env, tuning__retrieval_k=7, slack__port=4001)
    assert (settings.tuning.retrieval_k, settings.max_new_tokens, settings.tuning.temperature) == (7, 100, 0.0)
    assert (settings.slack.command, settings.slack.port, settings.slack.mode) == ("/env", 4001, "socket")
    # $BOT_CONFIG names the file, else ./bot.toml when there is one.
    assert load_settings(env={"BOT_CONFIG": str(toml)}).tuning.retrieval_k == 5
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
    for var, value in (("BOT_TUNING_RETRIEVAL_K", "9"), ("SLACK_COMMAND", "/env"), ("BOT_TRAIN_EPOCHS", "2")):
        monkeypatch.setenv(var, value)
    (tmp_path / "bot.toml").write_text("max_new_tokens = 99\n")
    monkeypatch.chdir(tmp_path)
    built = [
        Settings(),
        Settings.model_validate({}),
        Settings.model_validate_json("{}"),
        Settings().model_copy(update={"log_format": "json"}),
        load_settings(env={}, config_file=None, data_dir="d").model_copy(),
    ]
    assert [(s.tuning.retrieval_k, s.slack.command, s.training.epochs) for s in built] == [(3, "/assistant", 1.0)] * 5
    assert [s.max_new_tokens for s in built] == [160, 160, 160, 160, 99]  # only load_settings reads ./bot.toml
    assert (SlackSettings().command, TrainingSettings().epochs) == ("/assistant", 1.0)  # section defaults too
    assert load_settings(env={}).tuning.retrieval_k == 3  # env={} stands in for os.environ


def test_readme_table_is_the_generated_one() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "| `BOT_TRAIN_LORA_R` |" in settings_table()
    assert readme == readme_with_table(readme), f"README's settings table is stale: run `{REGENERATE}`"


# A value for each setting an old name sets: the variable's text, and what it reads as.
RENAMED_VALUES = {
    "engine": ("transformers", "transformers"),
    "max_pending_corrections_per_user": ("2", 2),
    "tuning.quantize": ("none", "none"),
    "tuning.device": ("cpu", "cpu"),
    "tuning.retrieval_k": ("7", 7),
    "tuning.min_similarity": ("0.5", 0.5),
    "tuning.history_turns": ("2", 2),
    "tuning.temperature": ("0.5", 0.5),
    "tuning.no_repeat_ngram": ("3", 3),
    "tuning.repetition_penalty": ("1.2", 1.2),
    "tuning.answer_bias": ("4.0", 4.0),
    "tuning.lora_for": ("all", "all"),
    "tuning.batch_size": ("2", 2),
    "tuning.max_seq_len": ("512", 512),
    "tuning.holdout_fraction": ("0.3", 0.3),
    "tuning.replay_size": ("4", 4),
    "tuning.paraphrases": ("1", 1),
    "tuning.use_kto": ("true", True),
    "tuning.cpu_dtype": ("float32", "float32"),
    "tuning.gate_heldout_margin": ("0.1", 0.1),
    "tuning.gate_regression_margin": ("0.2", 0.2),
    "tuning.keep_loaded": ("4", 4),
    "tuning.slack_streaming": ("edit", "edit"),
    "tuning.slack_stream_interval_s": ("0.5", 0.5),
    "tuning.discord_stream_interval_s": ("0.25", 0.25),
    "tuning.discord_edits_per_minute": ("30", 30.0),
    "tuning.discord_edit_burst": ("3", 3),
}


def _toml(values: dict[str, object]) -> str:
    """TOML text for {dotted name: value}: top-level keys first, then a table per section."""
    top = [f"{name} = {json.dumps(v)}" for name, v in values.items() if "." not in name]
    tables: dict[str, list[str]] = {}
    for dotted, value in values.items():
        if "." in dotted:
            section, name = dotted.split(".")
            tables.setdefault(section, []).append(f"{name} = {json.dumps(value)}")
    return "\n".join([*top, *(f"[{s}]\n" + "\n".join(lines) for s, lines in tables.items())]) + "\n"


def test_every_old_name_sets_its_setting_as_a_variable_and_as_a_toml_key(tmp_path: Path) -> None:
    assert set(RENAMED_VALUES) == set(RENAMED_SETTINGS.values()) <= SETTING_ENV_VARS.keys()
    assert not RENAMED_SETTINGS.keys() & SETTING_ENV_VARS.keys(), "an old name is a setting's name now"
    from_env = load_settings(env={dotted_env_var(old): RENAMED_VALUES[new][0] for old, new in RENAMED_SETTINGS.items()})
    toml = tmp_path / "bot.toml"
    toml.write_text(_toml({old: RENAMED_VALUES[new][1] for old, new in RENAMED_SETTINGS.items()}))
    from_file = load_settings(toml, env={})
    wanted = {new: want for new, (_, want) in RENAMED_VALUES.items()}
    assert {new: _get(from_env, new) for new in wanted} == wanted
    assert {new: _get(from_file, new) for new in wanted} == wanted
    # The new name wins over the old one in the same place; an old variable over the file's new key.
    assert load_settings(env={"BOT_ANSWER_BIAS": "4", "BOT_TUNING_ANSWER_BIAS": "3"}).tuning.answer_bias == 3.0
    toml.write_text("answer_bias = 4.0\n[tuning]\nanswer_bias = 3.0\n")
    assert load_settings(toml, env={}).tuning.answer_bias == 3.0
    assert load_settings(toml, env={"BOT_ANSWER_BIAS": "5"}).tuning.answer_bias == 5.0


def test_a_removed_setting_is_ignored_with_a_warning_and_an_unknown_one_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not REMOVED_SETTINGS.keys() & SETTING_ENV_VARS.keys()
    toml = tmp_path / "bot.toml"
    toml.write_text('example_layout = "turns"\nmax_new_tokens = 100\n[training]\nlora_dropout = 0.05\nepochs = 2\n')
    with caplog.at_level(logging.WARNING, logger="bot.config"):
        settings = load_settings(toml, env={"BOT_TRAIN_SEED": "1", "BOT_DEDUP_SIMILARITY": "0.9"})
    assert (settings.max_new_tokens, settings.training.epochs) == (100, 2.0)  # the rest of the file holds
    warned = caplog.text
    for name in ("'example_layout'", "'training.lora_dropout'", "BOT_TRAIN_SEED", "BOT_DEDUP_SIMILARITY"):
        assert f"{name} in {toml}" in warned or f"{name} is no longer read" in warned, name
    assert "one layout" in warned and "LORA_DROPOUT" in warned  # and where the value is now
    toml.write_text("[training]\nlora_dropouts = 0.05\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'training\.lora_dropouts'"):
        load_settings(toml, env={})


def test_the_readme_table_leaves_the_tuning_section_out() -> None:
    table = settings_table()
    assert "BOT_TUNING_" not in table and "| tuning." not in table
    assert table.count("\n") - 2 == len(SETTING_ENV_VARS) - len(TuningSettings.model_fields)
