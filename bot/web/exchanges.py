"""The console's exchanges (what was asked, filtered and paged; one exchange with its provenance and
feedback, and the corrections an admin writes there) and the review queue of pending corrections."""

from __future__ import annotations

import datetime as dt
import difflib
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.stores.browse import ExchangeFilter, conversation_around, corrections_of, find_exchanges, votes_of
from bot.web.auth import check_csrf
from bot.web.console import back

if TYPE_CHECKING:
    from bot.stores.records import Exchange
    from bot.web.console import Console

PAGE = 25


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """(kind, words) runs from `before` to `after`: kind is "same", "removed" or "added"."""
    a, b = before.split(), after.split()
    runs: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            runs.append(("same", " ".join(a[i1:i2])))
            continue
        if i2 > i1:
            runs.append(("removed", " ".join(a[i1:i2])))
        if j2 > j1:
            runs.append(("added", " ".join(b[j1:j2])))
    return runs


def _filter(request: Request) -> ExchangeFilter:
    q = request.query_params

    def day(name: str) -> dt.date | None:
        try:
            return dt.date.fromisoformat(q[name]) if q.get(name) else None
        except ValueError:
            return None

    vote = q.get("vote", "")
    return ExchangeFilter(
        q.get("platform", ""),
        q.get("workspace", "").strip(),
        vote if vote in ("up", "down", "none") else "",
        q.get("corrected") == "1",
        q.get("lora", "").strip(),
        day("since"),
        day("until"),
        q.get("q", "").strip(),
    )


def routes(console: Console) -> list[Route]:
    core = console.core

    def exchange_or_404(exchange_id: str) -> Exchange:
        found = core.store.exchange(exchange_id)
        if found is None:
            raise HTTPException(404, f"No exchange {exchange_id!r}.")
        return found

    async def listing(request: Request) -> Response:
        console.admin(request)
        wanted = _filter(request)
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        found, total = await run_in_threadpool(find_exchanges, core.store, wanted, (page - 1) * PAGE, PAGE)
        scores = {e.id: core.store.score(e.id) for e in found}
        query = {k: v for k, v in request.query_params.items() if k != "page"}
        return console.page(
            request,
            "exchanges.html",
            "Exchanges",
            exchanges=found,
            scores=scores,
            f=wanted,
            page=page,
            pages=max(1, -(-total // PAGE)),
            total=total,
            query=query,
        )

    async def one(request: Request) -> Response:
        console.admin(request)
        exchange = exchange_or_404(request.path_params["exchange_id"])
        details = await run_in_threadpool(_details, console, exchange)
        return console.page(request, "exchange.html", "Exchange", e=exchange, **details)

    async def correct(request: Request) -> Response:
        user = console.admin(request)
        form = await check_csrf(request)
        exchange = exchange_or_404(request.path_params["exchange_id"])
        if console.needs_examples(request):
            await console.correct(request, user, exchange, form.get("answer", ""))
        return back(f"/exchanges/{exchange.id}")

    async def make_example(request: Request) -> Response:
        user = console.admin(request)
        await check_csrf(request)
        exchange = exchange_or_404(request.path_params["exchange_id"])
        if console.needs_examples(request):
            await console.run(request, user, "teach", question=exchange.user_text, answer=exchange.reply)
        return back(f"/exchanges/{exchange.id}")

    async def review(request: Request) -> Response:
        console.admin(request)
        pending = [
            (c, core.store.exchange(c.exchange_id) if c.exchange_id else None) for c in core.pending_corrections()
        ]
        diffs = {c.id: word_diff(e.reply, c.answer) for c, e in pending if e is not None}
        return console.page(
            request, "review.html", "Review", pending=pending, diffs=diffs, reasons=core.store.reasons()
        )

    async def decide(request: Request) -> Response:
        user = console.admin(request)
        form = await check_csrf(request)
        correction_id, action = request.path_params["correction_id"], request.path_params["action"]
        if action not in ("accept", "reject", "edit"):
            raise HTTPException(404, "No such action.")
        if console.needs_examples(request):
            if action == "edit":  # the edited answer is the admin's own correction; the proposal is rejected
                pending = core.store.correction(correction_id)
                if pending is None or pending.exchange_id is None or pending.status != "pending":
                    console.flash(request, f"No pending correction {correction_id!r}.", ok=False)
                    return back("/review")
                exchange = exchange_or_404(pending.exchange_id)
                if not await console.correct(request, user, exchange, form.get("answer", "")):
                    return back("/review")
                await console.run(request, user, "feedback reject", correction_id=correction_id)
                console.flash(request, f"Your edit of {correction_id} is learned.")
            else:
                await console.run(request, user, f"feedback {action}", correction_id=correction_id)
        return back("/review")

    return [
        Route("/exchanges", listing, methods=["GET"]),
        Route("/exchanges/{exchange_id}", one, methods=["GET"]),
        Route("/exchanges/{exchange_id}/correct", correct, methods=["POST"]),
        Route("/exchanges/{exchange_id}/example", make_example, methods=["POST"]),
        Route("/review", review, methods=["GET"]),
        Route("/review/{correction_id}/{action}", decide, methods=["POST"]),
    ]


def _details(console: Console, exchange: Exchange) -> dict[str, Any]:
    """What the exchange page shows beside the exchange: its retrieved examples with their similarity
    to the question (computed now, with the embedder retrieval uses), votes, corrections, the
    conversation around it, and each correction as a diff against the reply."""
    core = console.core
    examples = core.examples.get(list(exchange.example_ids)) if exchange.example_ids else []
    similarity: dict[str, float] = {}
    if examples:
        vectors = core.examples.embedder.embed([exchange.user_text, *(e.input for e in examples)])
        for example, vector in zip(examples, vectors[1:], strict=True):
            similarity[example.id] = float(np.dot(vectors[0], vector))
    corrected = corrections_of(core.store, exchange.id)
    return {
        "examples": examples,
        "similarity": similarity,
        "missing": len(exchange.example_ids) - len(examples),
        "votes": votes_of(core.store, exchange.id),
        "corrections": corrected,
        "diffs": {c.id: word_diff(exchange.reply, c.answer) for c in corrected},
        "around": conversation_around(core.store, exchange),
        "score": core.store.score(exchange.id),
    }
