"""The Discord adapter's slash commands beyond the basics: autocomplete for the admin commands'
arguments (admins only), and /help and /reset in DMs while the admin commands sync to one guild."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

from bot.core import Core
from bot.types import LoraVersion
from tests.discord_adapter.helpers import ADMIN_ID, BotThread, followups
from tests.emulators.discord_api import AUTOCOMPLETE_RESULT, DiscordEmulator

VERSIONS = [LoraVersion("v0001", "", 1.0, "previous"), LoraVersion("v0002", "", 2.0, "active"),
            LoraVersion("v0003", "", 3.0, "candidate")]  # fmt: skip


def offered(emulator: DiscordEmulator, interaction: dict[str, object]) -> list[tuple[str, str]]:
    callback = emulator.callback_of(interaction)  # type: ignore[arg-type]
    assert callback["type"] == AUTOCOMPLETE_RESULT, callback
    return [(c["name"], c["value"]) for c in callback["data"]["choices"]]


def test_autocomplete_offers_versions_and_pending_corrections_to_admins_only(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core()
    core.registry = SimpleNamespace(versions=lambda: VERSIONS)  # type: ignore[assignment]
    long_question = "How do I reset my password " + "when the reset mail never arrives " * 5
    pending = core.store.add_correction(None, "discord", "222", long_question, "Ask IT.", accepted_by=None)
    start_bot(core)
    admin, member = emulator.add_user("admin", user_id=ADMIN_ID), emulator.add_user("member")

    assert offered(emulator, emulator.autocomplete(admin, "lora", "use", "version")) == [
        ("v0003 (candidate)", "v0003"),
        ("v0002 (active)", "v0002"),
        ("v0001 (previous)", "v0001"),
    ], "newest first, with status"
    assert offered(emulator, emulator.autocomplete(admin, "lora", "use", "version", "cand")) == [
        ("v0003 (candidate)", "v0003")
    ]
    for leaf in ("accept", "reject"):
        [(label, value)] = offered(emulator, emulator.autocomplete(admin, "feedback", leaf, "correction_id"))
        assert value == pending.id and label.startswith(f"{pending.id}: How do I reset my password")
        assert len(label) <= 100 and label.endswith("…"), "shortened to Discord's 100 characters"

    assert offered(emulator, emulator.autocomplete(member, "lora", "use", "version")) == []
    assert offered(emulator, emulator.autocomplete(member, "feedback", "accept", "correction_id")) == []


def test_help_and_reset_are_global_and_work_in_a_dm_under_guild_sync(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core()  # DISCORD_GUILD_ID is the emulator's server
    start_bot(core)
    everywhere = [0, 1, 2]  # guild, bot DM, private channel
    global_commands = {c["name"]: c for c in emulator.commands[None]}
    assert set(global_commands) == {"help", "reset"}
    assert all(sorted(c["contexts"]) == everywhere for c in global_commands.values())
    # Installed to servers only (docs/discord.md): a user install would reach servers the allow-list does not serve.
    synced = [*emulator.commands[None], *emulator.commands[str(emulator.guild_id)]]
    assert all(c["integration_types"] == [0] for c in synced)
    guild_commands = {c["name"] for c in emulator.commands[str(emulator.guild_id)]}
    admin_commands = {"status", "retrain", "teach", "lora", "feedback", "examples"}
    assert guild_commands == admin_commands, "admin commands: the guild only"

    user = emulator.add_user("dana")
    dm = emulator.dm_channel_id(user)
    [reset] = followups(emulator, emulator.invoke_command(user, "reset", channel_id=dm))
    assert reset.body["content"] == "Done: I forgot this conversation." and reset.body["flags"] & 64
    [helped] = followups(emulator, emulator.invoke_command(user, "help", channel_id=dm))
    assert "Commands:" in helped.body["content"]
