"""Every command is declared once (bot/commands.py); the help text, the text parser (Slack, the
terminal), Discord's application commands and the CLI all come from that declaration."""

from __future__ import annotations

from typing import Any

import discord
import pytest
import typer.main
from discord import app_commands

from adapters.discord_bot.commands import ADMIN_PERMISSIONS, add_commands
from bot.cli import app as cli_app
from bot.commands import COMMANDS, Command, help_text, parse
from bot.types import UserError

SAMPLE = {"version": "v0003", "question": "Is a => b a valid arrow?", "answer": "Yes.", "correction_id": "c1",
          "file": "out.jsonl", "page": "2", "example_id": "ab12cd34"}  # fmt: skip
OPTION_TYPES = {str: discord.AppCommandOptionType.string, int: discord.AppCommandOptionType.integer}


def sample_line(command: Command) -> str:
    values = [SAMPLE[a.name] for a in command.args]
    if command.separator:  # the question goes last-but-one: it may not hold the separator in text form
        values = [v.replace(command.separator, "->") for v in values]
    joiner = f" {command.separator} " if command.separator else " "
    return " ".join([command.name, joiner.join(values)]) if values else command.name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_parses_from_its_text_form(name: str) -> None:
    command = COMMANDS[name]
    call = parse(sample_line(command))
    assert call.command is command
    assert set(call.args) == {a.name for a in command.args}
    assert parse("/" + sample_line(command).upper().replace(name.upper(), name, 1)).command is command


def test_missing_or_extra_arguments_are_refused_with_the_usage() -> None:
    for command in COMMANDS.values():
        if any(not a.optional for a in command.args):
            with pytest.raises(UserError, match=command.usage.split()[0]):
                parse(command.name)
        elif command.args:  # optional arguments only: may be left out, not exceeded
            assert parse(command.name).args == {}
            with pytest.raises(UserError, match=r"needs `.*\["):
                parse(f"{sample_line(command)} surplus")
        else:
            with pytest.raises(UserError, match="takes no arguments"):
                parse(f"{command.name} surplus")


def test_help_lists_each_command_once_and_hides_admin_ones_from_others() -> None:
    admin_help, member_help = help_text(True), help_text(False)
    for command in COMMANDS.values():
        assert admin_help.count(f"  {command.usage} ") == 1, command.name
        assert (f"  {command.usage} " in member_help) is (not command.admin), command.name


def test_the_discord_command_tree_is_the_registry() -> None:
    tree = app_commands.CommandTree(discord.Client(intents=discord.Intents.none()))

    async def run_command(interaction: Any, name: str, options: dict[str, Any]) -> None:  # never called here
        raise AssertionError

    add_commands(tree, run_command)
    found: dict[str, tuple[app_commands.Command[Any, ..., Any], discord.Permissions | None]] = {}
    for top in tree.get_commands():
        if isinstance(top, app_commands.Group):
            for sub in top.commands:
                assert isinstance(sub, app_commands.Command)
                found[f"{top.name} {sub.name}"] = (sub, top.default_permissions)
        else:
            assert isinstance(top, app_commands.Command)
            found[top.name] = (top, top.default_permissions)
    assert set(found) == set(COMMANDS)
    for name, (app_command, permissions) in found.items():
        command = COMMANDS[name]
        assert [(p.name, p.type, p.required) for p in app_command.parameters] == [
            (a.name, OPTION_TYPES[a.type], not a.optional) for a in command.args
        ], name
        assert [p.description for p in app_command.parameters] == [a.help for a in command.args]
        # Hidden by default exactly when every command under the same name is for admins.
        same_group = [c for c in COMMANDS.values() if c.name.split()[0] == name.split()[0]]
        assert (permissions == ADMIN_PERMISSIONS) is all(c.admin for c in same_group), name


def test_the_cli_offers_the_registrys_cli_commands() -> None:
    root: Any = typer.main.get_command(cli_app)  # typer's own click classes
    ctx = root.context_class(root)

    def find(path: list[str]) -> Any:
        node = root
        for word in path:
            node = node.get_command(ctx, word) if hasattr(node, "get_command") else None
        return node

    for command in COMMANDS.values():
        found = find(command.name.split())
        if command.name == "examples remove":  # the CLI's own, through a running bot's store (bot/cli/manage.py)
            assert found is not None and [p.name for p in found.params] == ["ids"], "several ids, unlike chat's one"
            continue
        if not command.cli:
            assert found is None, f"`bot {command.name}` should not exist: it needs a chat or writes examples"
            continue
        assert found is not None, f"`bot {command.name}` is missing"
        assert [p.name for p in found.params if p.param_type_name == "argument"] == [a.name for a in command.args]
        assert found.help == command.help
