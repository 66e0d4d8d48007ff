"""SLACK_ALLOWED_TEAMS: outside the listed workspaces the bot answers nothing, runs no command,
counts no vote and stores nothing, and says so once in its log."""

from __future__ import annotations

import logging

from tests.emulators.slack_api import SlackEmulator
from tests.slack_adapter.helpers import ADMIN, ALICE, BOB, CHANNEL, REPLY, StartBot, exchange_of, final_reply, posts_in


def test_a_workspace_not_listed_gets_no_answer_no_command_and_leaves_no_trace(
    slack: SlackEmulator, socket_bot: StartBot, caplog
) -> None:
    core = socket_bot(slack__allowed_teams="TSOMEONEELSE")
    with caplog.at_level(logging.WARNING, logger="bot.feedback_rules"):
        for text in ("<@UBOT> what is the wifi password?", "<@UBOT> and the door code?"):
            mention = slack.user_message(CHANNEL, ALICE, text, mention=True)
            assert slack.wait_ack(slack.send_event(mention)).latency_s < 3.0, "still acked: Slack must not retry"
        slack.wait_ack(slack.send_command("/assistant", "status", ADMIN, CHANNEL))
        assert slack.stays(lambda: not posts_in(slack, CHANNEL) and not slack.responses(), for_s=1.0)
    assert core.store.count_exchanges() == 0 and core.generation.engine.calls == []  # type: ignore[attr-defined]
    refusals = [r for r in caplog.records if "not in its allow-list" in r.getMessage()]
    assert len(refusals) == 1 and slack.team_id in refusals[0].getMessage(), "logged once, naming the workspace"


def test_a_listed_workspace_is_served_and_a_vote_counts_only_while_it_stays_listed(
    slack: SlackEmulator, socket_bot: StartBot
) -> None:
    core = socket_bot(slack__allowed_teams=f"TSOMEONEELSE,{slack.team_id}")
    slack.send_event(slack.user_message(CHANNEL, ALICE, "<@UBOT> capital of France?", mention=True))
    reply = final_reply(slack, CHANNEL, REPLY)
    exchange = exchange_of(slack, core, CHANNEL, reply["ts"])

    core.settings = core.settings.model_copy(
        update={"slack": core.settings.slack.model_copy(update={"allowed_teams": ["TSOMEONEELSE"]})}
    )
    slack.wait_ack(slack.send_event(slack.reaction_event(CHANNEL, reply["ts"], BOB, "+1"), event_id="EvVOTEX"))
    assert slack.stays(lambda: core.store.score(exchange) == 0), "a reaction from a workspace no longer listed"
