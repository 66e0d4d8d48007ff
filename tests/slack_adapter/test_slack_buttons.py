"""The feedback buttons under every finished Slack reply: a click is a vote counted as a reaction
is, the voter is thanked privately, and a 👎 opens a modal whose answer becomes a correction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.slack.app import build_app, start_socket_mode
from bot.core import Core
from tests.emulators.slack_api import SlackEmulator
from tests.fakes import FakeEngine
from tests.slack_adapter.helpers import (
    ADMIN,
    ALICE,
    BOB,
    CHANNEL,
    REPLY,
    StartBot,
    exchange_of,
    final_reply,
    slack_overrides,
)


def ask(slack: SlackEmulator, core: Core, user: str = ALICE) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Mention the bot; (the mention, the finished reply, its exchange id)."""
    mention = slack.user_message(CHANNEL, user, "<@UBOT> capital of France?", mention=True)
    slack.send_event(mention)
    reply = slack.wait_for(
        lambda: next((m for m in slack.bot_messages(CHANNEL) if m["text"] == REPLY and m.get("blocks")
                      and len(m["blocks"]) == 2), None),
        what="the finished reply with its buttons",
    )  # fmt: skip
    return mention, reply, exchange_of(slack, core, CHANNEL, reply["ts"])


def thanks(slack: SlackEmulator, user: str) -> list[str]:
    return [c.params["text"] for c in slack.ok_calls("chat.postEphemeral") if c.params["user"] == user]


def test_the_final_message_carries_buttons_that_name_the_exchange(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(FakeEngine(REPLY, delay_s=0.03))
    _, reply, exchange = ask(slack, core)
    markdown, actions = reply["blocks"]
    assert markdown == {"type": "markdown", "text": REPLY}
    buttons = actions["elements"][0]
    assert (actions["type"], buttons["type"], buttons["action_id"]) == (
        "context_actions",
        "feedback_buttons",
        "feedback",
    )
    values = (buttons["positive_button"]["value"], buttons["negative_button"]["value"])
    assert values == (f"up:{exchange}", f"down:{exchange}")
    streamed = [c.params for c in slack.ok_calls("chat.update") if c.params["ts"] == reply["ts"]][:-1]
    assert streamed and all(len(p["blocks"]) == 1 for p in streamed), "no buttons while the reply is written"


def test_buttons_go_on_the_last_part_of_a_long_reply(slack: SlackEmulator, socket_bot: StartBot) -> None:
    paragraph = " ".join(f"Sentence {i} says something." for i in range(40))
    long_reply = "\n\n".join(f"{n}. {paragraph}" for n in range(8))  # about 8,000 characters: three parts
    socket_bot(FakeEngine(long_reply), max_new_tokens=4000, context_tokens=8192)
    slack.send_event(slack.user_message(CHANNEL, ALICE, "<@UBOT> tell me everything", mention=True))
    slack.wait_for(
        lambda: "\n\n".join(m["text"] for m in slack.bot_messages(CHANNEL)) == long_reply, what="the whole long reply"
    )
    slack.wait_for(lambda: len(slack.bot_messages(CHANNEL)[-1].get("blocks", [])) == 2, what="the buttons")
    parts = slack.bot_messages(CHANNEL)
    assert len(parts) >= 3
    assert [len(m["blocks"]) for m in parts] == [1] * (len(parts) - 1) + [2], "buttons on the last part only"


def test_a_click_counts_and_the_voter_is_thanked_privately(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    mention, reply, exchange = ask(slack, core)
    envelope = slack.send_interaction(slack.click_feedback(CHANNEL, reply["ts"], BOB))
    ack = slack.wait_ack(envelope)
    assert core.store.score(exchange) == 1, "the vote is written before the ack"
    assert ack.latency_s < 3.0
    slack.wait_for(lambda: thanks(slack, BOB) == ["Thanks — counted 👍."], what="the thanks")
    (call,) = slack.ok_calls("chat.postEphemeral")
    assert (call.params["channel"], call.params["thread_ts"]) == (CHANNEL, mention["ts"]), "where Bob clicked"
    slack.wait_for(lambda: core.examples.count() == 1, what="the example one 👍 from someone else makes")


def test_up_then_down_by_the_same_user_leaves_one_down_vote(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    _, reply, exchange = ask(slack, core)
    for positive in (True, False):
        slack.wait_ack(slack.send_interaction(slack.click_feedback(CHANNEL, reply["ts"], BOB, positive=positive)))
    assert core.store.score(exchange) == -1 and core.store.user_vote(exchange, "slack", BOB) == -1
    slack.wait_for(lambda: core.examples.count() == 0 and len(thanks(slack, BOB)) == 2, what="the 👎 to win")
    assert thanks(slack, BOB)[-1] == "Thanks — counted 👎."


def test_the_askers_own_up_vote_makes_no_example(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    _, reply, exchange = ask(slack, core, user=ALICE)
    slack.wait_ack(slack.send_interaction(slack.click_feedback(CHANNEL, reply["ts"], ALICE)))
    assert core.store.user_vote(exchange, "slack", ALICE) == 1
    assert slack.stays(lambda: core.examples.count() == 0), "the asker alone cannot teach the bot"


def test_a_click_after_a_restart_counts(slack: SlackEmulator, make_core: Callable[..., Core]) -> None:
    core = make_core(FakeEngine(REPLY), admins=(f"slack:{ADMIN}",), **slack_overrides(slack))
    first = start_socket_mode(build_app(core, core.settings), core.settings)
    slack.wait_connected()
    _, reply, exchange = ask(slack, core)
    first.stop()
    slack.wait_for(lambda: not slack.connected(), what="the first app to go")

    second = start_socket_mode(build_app(core, core.settings), core.settings)  # a new adapter, nothing kept
    try:
        slack.wait_connected()
        slack.wait_ack(slack.send_interaction(slack.click_feedback(CHANNEL, reply["ts"], BOB)))
        assert core.store.score(exchange) == 1
    finally:
        second.stop()


def test_a_down_vote_opens_a_modal_whose_answer_is_a_pending_correction(
    slack: SlackEmulator, socket_bot: StartBot
) -> None:
    core = socket_bot(max_correction_chars=500)
    _, reply, exchange = ask(slack, core)
    slack.wait_ack(slack.send_interaction(slack.click_feedback(CHANNEL, reply["ts"], BOB, positive=False)))
    view = slack.wait_for(slack.views, what="the correction modal")[0]
    assert view["title"]["text"] == "What would be right?"
    reasons, answer = view["blocks"]
    assert [o["value"] for o in reasons["element"]["options"]] == ["wrong", "outdated", "unhelpful", "unsafe"]
    element = answer["element"]
    assert (element["type"], element["multiline"], element["max_length"]) == ("plain_text_input", True, 500)
    assert answer["optional"] is True and exchange in view["private_metadata"]

    submitted = slack.view_submission(view["id"], BOB, "Paris, since 987.", choice="outdated")
    ack = slack.wait_ack(slack.send_interaction(submitted))
    assert not (ack.payload or {}).get("errors"), ack.payload
    assert core.store.reasons(exchange) == {"outdated": 1}, "the reason, on BOB's 👎"
    (correction,) = core.store.corrections()
    assert (correction.exchange_id, correction.answer, correction.status) == (exchange, "Paris, since 987.", "pending")
    assert core.examples.count() == 0, "a non-admin's correction waits for review"
    slack.wait_for(lambda: any("waiting for an admin" in t for t in thanks(slack, BOB)), what="the confirmation")
    assert any(t.startswith("Noted: outdated.") for t in thanks(slack, BOB))


def test_unsafe_with_no_answer_keeps_the_reply_from_ever_being_an_example(
    slack: SlackEmulator, socket_bot: StartBot
) -> None:
    core = socket_bot()
    _, reply, exchange = ask(slack, core)
    slack.wait_ack(slack.send_interaction(slack.click_feedback(CHANNEL, reply["ts"], BOB, positive=False)))
    view = slack.wait_for(slack.views, what="the correction modal")[0]
    slack.wait_ack(slack.send_interaction(slack.view_submission(view["id"], BOB, "", choice="unsafe")))
    assert core.store.reasons(exchange) == {"unsafe": 1} and not core.store.corrections()
    for voter in (ADMIN, "UCAROL", "UDAVE"):  # even an admin's 👍 and a net score of +2
        slack.wait_ack(slack.send_interaction(slack.click_feedback(CHANNEL, reply["ts"], voter)))
    assert core.store.score(exchange) == 2 and core.examples.count() == 0
    slack.wait_for(lambda: "Noted: unsafe." in thanks(slack, BOB), what="the confirmation")


def test_an_admins_correction_from_the_modal_is_an_example_at_once(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot()
    _, reply, _ = ask(slack, core)
    slack.wait_ack(slack.send_interaction(slack.click_feedback(CHANNEL, reply["ts"], ADMIN, positive=False)))
    view = slack.wait_for(slack.views, what="the correction modal")[0]
    slack.wait_ack(slack.send_interaction(slack.view_submission(view["id"], ADMIN, "Paris.")))
    assert [(e.input, e.output) for e in core.examples.list()] == [("capital of France?", "Paris.")]


def test_a_too_long_modal_answer_is_refused_in_the_modal(slack: SlackEmulator, socket_bot: StartBot) -> None:
    core = socket_bot(max_correction_chars=10)
    _, reply, _ = ask(slack, core)
    slack.wait_ack(slack.send_interaction(slack.click_feedback(CHANNEL, reply["ts"], BOB, positive=False)))
    view = slack.wait_for(slack.views, what="the correction modal")[0]
    ack = slack.wait_ack(slack.send_interaction(slack.view_submission(view["id"], BOB, "x" * 11)))
    assert (ack.payload or {}).get("response_action") == "errors", ack.payload
    assert "limited to 10" in ack.payload["errors"]["answer"]
    assert core.store.corrections() == []


def test_a_signed_click_counts_in_http_mode(slack: SlackEmulator, http_bot: tuple[Core, str]) -> None:
    core, url = http_bot
    mention = slack.user_message(CHANNEL, ALICE, "<@UBOT> capital?", mention=True)
    assert slack.post_event(url, mention).status == 200
    reply = final_reply(slack, CHANNEL, REPLY)
    slack.wait_for(lambda: len(slack.bot_messages(CHANNEL)[0].get("blocks", [])) == 2, what="the buttons")
    delivered = slack.post_interaction(url, slack.click_feedback(CHANNEL, reply["ts"], BOB))
    assert delivered.status == 200
    assert core.store.score(exchange_of(slack, core, CHANNEL, reply["ts"])) == 1
    forged = slack.post_interaction(url, slack.click_feedback(CHANNEL, reply["ts"], ALICE), secret="nope")
    assert forged.status == 401
