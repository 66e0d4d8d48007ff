"""The Discord adapter under Discord's rate limits: a 429 that discord.py gives up on never fails a
reply, and many questions at once in one channel, whose edits share that channel's budget, all end
with their final text and buttons."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.core import Core
from tests.discord_adapter.helpers import BotThread, buttons, final_reply
from tests.emulators.discord_api import DiscordEmulator, wait_until

EDIT = r"/channels/(\d+)/messages/\d+"
POST = r"/channels/(\d+)/messages"


def test_a_429_that_discord_py_gives_up_on_is_waited_out(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread]
) -> None:
    core = fast_core(reply="Finished after all.")
    start_bot(core)
    emulator.rate_limit("PATCH", EDIT, times=5, retry_after=0.05)  # discord.py tries five times, then raises
    asked = emulator.send_message(emulator.add_user("pia"), f"{emulator.mention()} still there?")
    [answer] = final_reply(emulator, asked)
    assert answer["content"] == "Finished after all." and len(buttons(answer)) == 2
    edits = emulator.calls_to("PATCH", EDIT)
    assert [c.status for c in edits][:5] == [429] * 5 and edits[-1].status == 200


@pytest.mark.parametrize("announced", [True, False], ids=["headers", "shared-bucket"])
def test_thirty_questions_at_once_all_finish_under_the_channel_limit(
    emulator: DiscordEmulator, fast_core: Callable[..., Core], start_bot: Callable[..., BotThread], announced: bool
) -> None:
    reply = "Every reply gets its final text, whatever the rate limit says."
    # Discord's shape (5 per window per channel, 429 + Retry-After beyond it) on a 1 s window
    # instead of 5 s, so that the test takes seconds; the bot's budget is set to the same rate.
    # Unannounced, discord.py cannot wait ahead of the limit and meets 429s, as beside other replicas.
    emulator.limit_route("POST", POST, limit=5, window_s=1.0, announce=announced)
    emulator.limit_route("PATCH", EDIT, limit=5, window_s=1.0, announce=announced)
    # 30 questions from one server: within its share of the answer slots (75% of 40).
    core = fast_core(reply=reply, delay_s=0.01, answer_threads=40, tuning__discord_edits_per_minute=300,
                     tuning__discord_edit_burst=5)  # fmt: skip
    start_bot(core)
    users = [emulator.add_user(f"user{i}") for i in range(15)]
    asked = [emulator.send_message(user, f"{emulator.mention()} question {n} from {user['username']}")
             for n in range(2) for user in users]  # fmt: skip

    def finished() -> list[list[dict]] | None:
        parts = [emulator.replies_to(m["id"]) for m in asked]
        done = [p for p in parts if len(p) == 1 and p[0]["content"] == reply and buttons(p[0])]
        return parts if len(done) == len(asked) else None

    parts = wait_until(finished, 90, what="all 30 replies finished")
    assert core.store.count_exchanges() == 30
    for [answer] in parts:
        exchange = core.exchange_for_message("discord", answer["id"])
        assert buttons(answer) == [f"vote:{exchange}:up", f"vote:{exchange}:down"]
    edits = emulator.calls_to("PATCH", EDIT)
    assert len([c for c in edits if c.status == 200]) >= 30, "at least every final text"
    if not announced:
        assert emulator.calls_to("POST", POST, status=429) or emulator.calls_to("PATCH", EDIT, status=429)
