"""Private channels and group DMs teach only themselves, whichever event brings the question."""

from __future__ import annotations

import pytest

from bot.types import dm_scope
from tests.emulators.slack_api import SlackEmulator
from tests.slack_adapter.helpers import ALICE, BOB, CHANNEL, REPLY, StartBot, exchange_of, final_reply

PRIVATE = "C0SECRET"  # a private channel's id may start with C, as a public one's does
QUESTION = "<@UBOT> what is the capital of France?"


@pytest.mark.parametrize(
    ("kind", "delivered_as"),
    [("group", "app_mention"), ("mpim", "app_mention"), ("group", "message")],
)
def test_a_vote_in_a_private_conversation_teaches_it_alone(
    slack: SlackEmulator, socket_bot: StartBot, kind: str, delivered_as: str
) -> None:
    core = socket_bot()
    slack.add_channel(PRIVATE, kind)
    # app_mention events carry no channel_type (the adapter asks conversations.info); message.* do.
    if delivered_as == "app_mention":
        asked = slack.user_message(PRIVATE, ALICE, QUESTION, mention=True)
    else:
        asked = slack.user_message(PRIVATE, ALICE, QUESTION, channel_type=kind)
    slack.send_event(asked)
    reply = final_reply(slack, PRIVATE, REPLY)
    slack.send_event(slack.reaction_event(PRIVATE, reply["ts"], BOB, "+1"))
    slack.wait_for(lambda: core.examples.count() == 1, what="the 👍 to make an example")
    assert [e.scope for e in core.examples.list()] == [dm_scope("slack", PRIVATE)]

    # The same question in a public channel of the workspace does not retrieve it.
    public = slack.user_message(CHANNEL, ALICE, QUESTION, mention=True)
    slack.send_event(public)
    public_reply = final_reply(slack, CHANNEL, REPLY)
    exchange = core.store.exchange(exchange_of(slack, core, CHANNEL, public_reply["ts"]))
    assert exchange is not None and exchange.example_ids == ()
