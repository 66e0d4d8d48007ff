"""What Slack was told arrived is on disk: the bot killed (SIGKILL) the moment its ack goes out
keeps the vote or the taught answer when it starts again (Slack never redelivers an acked event)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.stores.examples import ExampleStore
from bot.stores.feedback import FeedbackStore
from tests.emulators.slack_api import SlackEmulator
from tests.fakes import FakeEmbedder
from tests.slack_adapter.conftest import BotProcess
from tests.slack_adapter.helpers import ADMIN, ALICE, BOB, CHANNEL, REPLY, final_reply


def _reopened(bot: BotProcess) -> tuple[FeedbackStore, ExampleStore]:
    """The data directory's stores, as the next start of the bot opens them."""
    return FeedbackStore(bot.data_dir / "feedback.sqlite3"), ExampleStore(FakeEmbedder(), bot.data_dir / "chroma")


@pytest.mark.parametrize("mode", ["socket", "http"])
def test_a_vote_acked_is_kept_when_the_bot_is_killed_at_the_ack(
    slack: SlackEmulator, bot_process: Callable[..., BotProcess], mode: str
) -> None:
    bot = bot_process(**({"slack__mode": "http"} if mode == "http" else {}))
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> capital of France?", mention=True)
    if mode == "http":
        slack.post_event(bot.url, mention)
    else:
        slack.send_event(mention)
    reply = final_reply(slack, CHANNEL, REPLY)
    ref = f"{CHANNEL}:{reply['ts']}"
    watching = FeedbackStore(bot.data_dir / "feedback.sqlite3")  # the reply's link trails its last edit
    exchange = slack.wait_for(lambda: watching.exchange_for_message("slack", ref), what="the reply's link")
    watching.close()

    vote = slack.reaction_event(CHANNEL, reply["ts"], BOB, "+1")
    if mode == "http":
        assert slack.post_event(bot.url, vote).status == 200
        bot.process.kill()  # as soon as the response is read
    else:
        slack.on_ack = lambda ack: bot.process.kill()  # on the emulator's thread, as the ack arrives
        slack.send_event(vote)
    bot.process.wait(timeout=10)

    store, examples = _reopened(bot)
    assert store.user_vote(exchange, "slack", BOB) == 1
    assert [e.output for e in examples.list()] == [REPLY], "the upvoted reply became an example"
    store.close()


def test_a_teach_acked_is_kept_when_the_bot_is_killed_at_the_ack(
    slack: SlackEmulator, bot_process: Callable[..., BotProcess]
) -> None:
    bot = bot_process()
    slack.on_ack = lambda ack: bot.process.kill()
    slack.send_command("/assistant", "teach What is the VPN port? => 1194", ADMIN, CHANNEL)
    bot.process.wait(timeout=10)
    store, examples = _reopened(bot)
    assert [(e.input, e.output) for e in examples.list()] == [("What is the VPN port?", "1194")]
    store.close()
