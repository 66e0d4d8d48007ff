"""The Discord adapter's feedback buttons: 👍/👎 under every finished answer, counted as reactions
are, the voter thanked privately, a 👎's "What would be right?" modal, and clicks after a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.core import Core
from bot.types import ConversationKey, Vote, workspace_scope
from tests.discord_adapter.helpers import ADMIN_ID, TIMEOUT, BotThread, buttons, final_reply
from tests.emulators.discord_api import (
    CHANNEL_MESSAGE,
    EPHEMERAL,
    MODAL,
    DiscordEmulator,
    wait_until,
)

ANSWER = "The office opens at 10."


def answered(
    emulator: DiscordEmulator, core: Core, asker: dict[str, Any], question: str = "when does the office open?"
) -> tuple[dict[str, Any], str]:
    """Ask in the server's channel; the finished answer and its exchange id."""
    asked = emulator.send_message(asker, f"{emulator.mention()} {question}")
    [answer] = final_reply(emulator, asked)
    exchange = core.exchange_for_message("discord", answer["id"])
    assert exchange is not None
    return answer, exchange


def told(emulator: DiscordEmulator, interaction: dict[str, Any]) -> str:
    """What the bot told the clicker, checking that only they saw it."""
    callback = emulator.callback_of(interaction)
    assert callback["type"] == CHANNEL_MESSAGE and callback["data"]["flags"] & EPHEMERAL, callback
    return str(callback["data"]["content"])


def test_a_finished_answer_carries_two_buttons_that_name_its_exchange(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    assert answer["content"] == ANSWER
    assert buttons(answer) == [f"vote:{exchange}:up", f"vote:{exchange}:down"]
    [row] = answer["components"]
    assert row["type"] == 1 and [(b["type"], b["emoji"]["name"]) for b in row["components"]] == [(2, "👍"), (2, "👎")]


def test_a_click_counts_and_the_clicker_is_thanked_privately(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    click = emulator.click(emulator.add_user("bob"), answer["id"], f"vote:{exchange}:up")
    assert told(emulator, click) == "Thanks — counted 👍."
    assert core.store.score(exchange) == 1
    assert any(e.exchange_id == exchange for e in core.examples.list()), "one 👍 from someone else teaches it"


def test_a_second_click_replaces_the_first(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    bob = emulator.add_user("bob")
    told(emulator, emulator.click(bob, answer["id"], f"vote:{exchange}:up"))
    assert core.store.score(exchange) == 1
    down = emulator.click(bob, answer["id"], f"vote:{exchange}:down")
    assert emulator.callback_of(down)["type"] == MODAL, "a 👎 asks what would be right"
    # The vote is written after the modal opens: wait for the score, then for the example it unmakes.
    wait_until(lambda: core.store.score(exchange) == -1, what="one vote per user: the 👎 replacing the 👍")
    wait_until(lambda: not any(e.exchange_id == exchange for e in core.examples.list()), what="no longer an example")


def test_the_askers_own_up_does_not_make_an_example(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    start_bot(core)
    alice = emulator.add_user("alice")
    answer, exchange = answered(emulator, core, alice)
    assert told(emulator, emulator.click(alice, answer["id"], f"vote:{exchange}:up")) == "Thanks — counted 👍."
    assert core.store.score(exchange) == 1
    assert core.examples.list() == [], "the asker cannot make the bot repeat its answer to others"


def test_a_click_after_a_restart_still_counts(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    first = start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    first.stop()
    start_bot(core)  # a new client on the same stores: nothing of the old one's views survives
    click = emulator.click(emulator.add_user("bob"), answer["id"], f"vote:{exchange}:up")
    assert told(emulator, click) == "Thanks — counted 👍."
    assert core.store.score(exchange) == 1


def test_a_down_opens_a_modal_whose_text_becomes_a_correction(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER, max_correction_chars=300)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    bob = emulator.add_user("bob")
    down = emulator.click(bob, answer["id"], f"vote:{exchange}:down")
    modal = emulator.callback_of(down)
    assert modal["type"] == MODAL and modal["data"]["title"] == "What would be right?"
    reason, label = modal["data"]["components"]
    assert reason["component"]["type"] == 21, "a radio group of reasons, in a label"
    assert [o["value"] for o in reason["component"]["options"]] == ["wrong", "outdated", "unhelpful", "unsafe"]
    assert label["component"]["style"] == 2 and label["component"]["max_length"] == 300, "a paragraph, capped"
    assert label["component"]["required"] is False, "the right answer is optional"
    wait_until(lambda: core.store.score(exchange) == -1, what="the vote, counted before the modal is answered")

    submitted = emulator.submit_modal(bob, down, "The office opens at 9.", choice="outdated")
    said = told(emulator, submitted)
    assert said.startswith("Thanks — counted 👎. Noted: outdated.") and "review" in said
    assert core.store.reasons(exchange) == {"outdated": 1} and core.store.score(exchange) == -1
    [pending] = core.store.corrections("pending")
    assert (pending.exchange_id, pending.answer, pending.user_id) == (exchange, "The office opens at 9.", bob["id"])
    assert not any(e.output == "The office opens at 9." for e in core.examples.list()), "waits for an admin"


def test_an_answer_from_a_verified_answer_says_so_in_small_text(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    start_bot(core)
    core.rules.teach("discord", ADMIN_ID, "When does the office open?", "At nine.")
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    assert answer["content"] == ANSWER + "\n-# 📚 From “When does the office open?” (taught) · the base model"
    assert core.store.exchange(exchange).reply == ANSWER, "shown, not stored"
    plain, _ = answered(emulator, core, emulator.add_user("bob"), question="zzz qqq")
    assert plain["content"] == ANSWER, "no line when nothing verified was used and no LoRA wrote it"


def test_unsafe_without_an_answer_unmakes_the_example_and_keeps_it_out_of_training(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    for name in ("bob", "carol"):  # two 👍 make it an example
        told(emulator, emulator.click(emulator.add_user(name), answer["id"], f"vote:{exchange}:up"))
    wait_until(lambda: any(e.exchange_id == exchange for e in core.examples.list()), what="the example")
    dave = emulator.add_user("dave")
    down = emulator.click(dave, answer["id"], f"vote:{exchange}:down")
    said = told(emulator, emulator.submit_modal(dave, down, "", choice="unsafe"))
    assert said == "Thanks — counted 👎. Noted: unsafe." and core.store.corrections() == []
    assert not any(e.exchange_id == exchange for e in core.examples.list()), "an unsafe answer is no example"
    told(emulator, emulator.click(emulator.add_user("erin"), answer["id"], f"vote:{exchange}:up"))
    assert not any(e.exchange_id == exchange for e in core.examples.list()), "and no later 👍 makes it one"
    assert "unsafe 1" in core.command("discord", ADMIN_ID, "feedback review", ConversationKey("discord", "c")).text


def test_a_down_opens_its_modal_first_however_slow_the_vote_is_to_write(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    handle = core.handle

    def slow_votes(event):
        if isinstance(event, Vote):
            time.sleep(1.5)  # a busy database
        return handle(event)

    core.handle = slow_votes
    down = emulator.click(emulator.add_user("bob"), answer["id"], f"vote:{exchange}:down")
    assert emulator.callback_of(down)["type"] == MODAL
    assert core.store.score(exchange) == 0, "the modal came first"
    wait_until(lambda: core.store.score(exchange) == -1, what="the vote, written after")


def test_an_admins_modal_correction_is_learned_at_once(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    admin = emulator.add_user("admin", user_id=ADMIN_ID)
    down = emulator.click(admin, answer["id"], f"vote:{exchange}:down")
    assert "learned" in told(emulator, emulator.submit_modal(admin, down, "It opens at 8."))
    [accepted] = core.store.corrections("accepted")
    assert accepted.answer == "It opens at 8."
    [example] = [e for e in core.examples.list() if e.output == "It opens at 8."]
    assert example.scope == workspace_scope("discord", str(emulator.guild_id)), "seen in that server only"


def test_a_modal_correction_from_another_place_is_refused(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    # The rules compare where the modal was submitted with where the reply was: a DM's is not the server's.
    core = fast_core(reply=ANSWER)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    bob = emulator.add_user("bob")
    down = emulator.click(bob, answer["id"], f"vote:{exchange}:down")
    emulator.callback_of(down)
    elsewhere = {**down, "channel_id": emulator.dm_channel_id(bob)}  # as if it came from bob's DM
    said = told(emulator, emulator.submit_modal(bob, elsewhere, "Wrong place."))
    assert "not kept" in said and core.store.corrections() == []


def test_a_button_in_a_server_not_allowed_is_ignored(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    # The server is taken off the allow-list after the answer was posted.
    section = core.settings.discord.model_copy(update={"allowed_guilds": ["123456789"]})
    core.settings = core.settings.model_copy(update={"discord": section})
    click = emulator.click(emulator.add_user("bob"), answer["id"], f"vote:{exchange}:up")
    assert told(emulator, click).startswith("Not counted")
    assert core.store.score(exchange) == 0


def test_reactions_still_count_and_seeding_is_opt_in(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply=ANSWER, discord__seed_reactions=True)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    wait_until(lambda: len(emulator.messages[answer["id"]]["reactions"]) == 2, TIMEOUT, what="the seeded reactions")
    emulator.react(answer["id"], emulator.add_user("bob"), "👍")
    wait_until(lambda: core.store.score(exchange) == 1, TIMEOUT, what="bob's reaction vote")


def test_a_button_copied_onto_another_message_counts_nothing(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    """Another app can post a message carrying a button whose custom id names any exchange: the
    click must come from a message that shows that reply."""
    core = fast_core(reply=ANSWER)
    start_bot(core)
    answer, exchange = answered(emulator, core, emulator.add_user("alice"))
    forged = str(emulator.snowflake())
    emulator.messages[forged] = {**answer, "id": forged, "author": emulator.add_user("otherapp")}
    said = told(emulator, emulator.click(emulator.add_user("bob"), forged, f"vote:{exchange}:up"))
    assert said == "Not counted: a button on a message that does not show its reply."
    assert core.store.score(exchange) == 0
