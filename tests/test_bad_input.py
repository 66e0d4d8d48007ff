"""Bad input gets a clear message, never a crash: names, empty lookups, quotes, settings."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import discord
import pytest

from adapters.console import run_console
from adapters.discord_bot.client import plain_text
from bot import status
from bot.commands import parse
from bot.config import MIN_PROMPT_TOKENS, ConfigError, Settings, load_settings
from bot.stores.examples import ExampleStore
from bot.types import UserError
from tests.conftest import MakeCore
from tests.fakes import FakeEmbedder

# Discord names ----------------------------------------------------------------------------------


def test_plain_text_keeps_a_display_name_with_backslashes() -> None:
    # `\o/` as a replacement string is a bad escape for re.sub: the message used to be dropped.
    other = SimpleNamespace(id=42, display_name=r"\o/ \1 \g<0>")
    message = SimpleNamespace(content="<@7> ask <@!42> about it", mentions=[other])
    assert plain_text(cast(discord.Message, message), me_id=7) == r"ask @\o/ \1 \g<0> about it"


# empty id lists ---------------------------------------------------------------------------------


def test_example_store_get_and_remove_take_an_empty_id_list(tmp_path: Path) -> None:
    store = ExampleStore(FakeEmbedder(), tmp_path / "chroma")
    assert store.get([]) == []  # `bot ask --json` with nothing retrieved
    assert store.remove([]) == 0
    kept = store.add("How do I reset?", "Open Settings.", "good", "taught")
    assert store.get([]) == [] and store.remove([]) == 0
    assert [e.id for e in store.get([kept])] == [kept]  # an empty list never means "all"
    assert store.count() == 1


# quotes in commands -----------------------------------------------------------------------------


def test_an_unbalanced_quote_is_a_user_error() -> None:
    with pytest.raises(UserError, match="close the quote"):
        parse('feedback accept "abc')
    assert parse('feedback export "a b"').args == {"file": "a b"}


def test_console_keeps_chatting_after_bad_and_failing_commands(
    make_core: MakeCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = make_core()

    def broken(_core: object) -> str:
        raise RuntimeError("the status broke")

    monkeypatch.setattr(status, "status_text", broken)
    out = io.StringIO()
    run_console(core, ['/feedback accept "abc', "/status", "/help"], out)
    text = out.getvalue()
    assert "close the quote" in text
    assert "RuntimeError: the status broke" in text
    assert "Commands:" in text, "the chat went on after both"


# settings ---------------------------------------------------------------------------------------


def _load(tmp_path: Path, toml: str) -> Settings:
    path = tmp_path / "bot.toml"
    path.write_text(toml)
    return load_settings(path, env={})


def test_admins_of_the_wrong_type_or_shape_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"admins \(in .*bot.toml\) = 5: Input should be a valid list"):
        _load(tmp_path, "admins = 5\n")
    with pytest.raises(ConfigError, match=r"admins .*valid string"):
        _load(tmp_path, "admins = [5]\n")
    with pytest.raises(ConfigError, match="'slack:U 1': a user id has no spaces"):
        _load(tmp_path, 'admins = ["slack:U 1"]\n')
    with pytest.raises(ConfigError, match="unknown platform 'slak'; use one of console, cli, slack, discord"):
        _load(tmp_path, 'admins = ["slak:U1"]\n')
    # Spaces around the parts and the platform's case are forgiven: these match in Core.is_admin.
    settings = _load(tmp_path, 'admins = [" slack: U1", "Discord:42 "]\n')
    assert settings.admins == ["slack:U1", "discord:42"]
    with pytest.raises(ConfigError, match=r"admins \(env BOT_ADMINS\)"):
        load_settings(env={"BOT_ADMINS": "slack:U1,irc:me"})


def test_log_level_must_be_a_logging_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"log_level .* = 'verbose': .*unknown log level; use one of DEBUG"):
        _load(tmp_path, 'log_level = "verbose"\n')
    assert _load(tmp_path, 'log_level = "debug"\n').log_level == "DEBUG"


def test_context_must_leave_room_for_the_prompt(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"context_tokens \(200\) must exceed max_new_tokens \(160\) by at least 64"):
        _load(tmp_path, "context_tokens = 200\n")
    with pytest.raises(ConfigError, match=r"context_tokens \(2048\) .* max_new_tokens \(4000\)"):
        load_settings(env={"BOT_MAX_NEW_TOKENS": "4000"})
    fits = _load(tmp_path, f"context_tokens = {160 + MIN_PROMPT_TOKENS}\n")
    assert fits.context_tokens == 224


def test_the_answer_settings_come_from_env_vars_and_bad_values_name_the_variable() -> None:
    settings = load_settings(env={"BOT_TUNING_ANSWER_BIAS": "0", "BOT_TUNING_LORA_FOR": "all"})
    assert (settings.tuning.answer_bias, settings.tuning.lora_for) == (0.0, "all")
    with pytest.raises(ConfigError, match=r"lora_for \(env BOT_TUNING_LORA_FOR\) = 'some'"):
        load_settings(env={"BOT_TUNING_LORA_FOR": "some"})
    with pytest.raises(ConfigError, match=r"answer_bias \(env BOT_ANSWER_BIAS\)"):  # an old name: the one given
        load_settings(env={"BOT_ANSWER_BIAS": "-1"})
