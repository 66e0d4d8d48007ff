"""The edit budget shared by every reply of a workspace: intermediate edits are skipped once it is
spent, the final text always goes (waiting out a 429's Retry-After), and a 429 never fails a reply."""

from __future__ import annotations

import time

import pytest

from adapters.edit_budget import EditBudget
from adapters.streaming import FINAL_TRIES, RateLimited, ReplyOnScreen


class CountingScreen:
    def __init__(self, limited: int = 0, retry_after_s: float = 0.05) -> None:
        self.edits: list[str] = []
        self.posts = 0
        self.limited, self.retry_after_s = limited, retry_after_s

    def post(self, text: str, buttons: str | None = None) -> str:
        self.posts += 1
        return f"m{self.posts}"

    def edit(self, ref: str, text: str, buttons: str | None = None) -> None:
        if self.limited:
            self.limited -= 1
            raise RateLimited(self.retry_after_s)
        self.edits.append(text)

    def delete(self, ref: str) -> None:
        pass


def test_replies_share_one_budget_and_every_final_text_is_delivered() -> None:
    budget = EditBudget(per_minute=60, burst=5)
    screens = [CountingScreen() for _ in range(10)]
    replies = [ReplyOnScreen(screen, 4000, 0.0, budget, "T1") for screen in screens]
    for reply in replies:
        reply.show("…", wait=False)  # a placeholder is a post, not an edit
    for step in range(20):  # ten replies streaming at once
        for reply in replies:
            reply.show(f"text {step}", wait=False)
    for reply in replies:
        reply.show("final", wait=True)
    intermediate = sum(len(s.edits) - 1 for s in screens)
    assert intermediate == 5, "the workspace's burst, not 5 per reply"
    assert all(s.edits[-1] == "final" for s in screens)
    other = ReplyOnScreen(CountingScreen(), 4000, 0.0, budget, "T2")
    other.show("…", wait=False)
    other.show("another workspace", wait=False)
    assert other.screen.edits == ["another workspace"], "each workspace has its own budget"


def test_a_429_skips_intermediate_edits_until_retry_after_and_the_final_edit_waits_it_out() -> None:
    budget = EditBudget(per_minute=6000, burst=50)
    screen = CountingScreen(limited=1, retry_after_s=0.3)
    reply = ReplyOnScreen(screen, 4000, 0.0, budget, "T1")
    reply.show("…", wait=False)
    reply.show("partial", wait=False)  # answered 429: skipped, not failed
    reply.show("more", wait=False)  # within Retry-After: not even tried
    assert screen.edits == []
    started = time.monotonic()
    reply.show("final", wait=True)
    assert screen.edits == ["final"] and time.monotonic() - started >= 0.25


def test_a_final_edit_gives_up_only_after_repeated_429s() -> None:
    screen = CountingScreen(limited=FINAL_TRIES, retry_after_s=0.0)
    reply = ReplyOnScreen(screen, 4000, 0.0, EditBudget(60, 5), "T1")
    reply.show("…", wait=False)
    with pytest.raises(RateLimited):
        reply.show("final", wait=True)
    screen.limited = FINAL_TRIES - 1
    reply.show("final", wait=True)
    assert screen.edits == ["final"]
