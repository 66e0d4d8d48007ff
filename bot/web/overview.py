"""The console's overview: votes per day by LoRA version, the share of replies a verified example
stood behind, reply latency, the queue, and each version's gate accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bot.stores.browse import reply_stats, votes_by_day
from bot.web.charts import bar_chart

if TYPE_CHECKING:
    from bot.web.console import Console


def routes(console: Console) -> list[Route]:
    core = console.core

    async def overview(request: Request) -> Response:
        if "name" not in request.session:
            return RedirectResponse("/signin", status_code=303)
        console.admin(request)
        by_day = votes_by_day(core.store)
        bars = bar_chart([(f"{day[5:]} {version}", up, down) for day, version, up, down in by_day])
        versions = list(reversed(core.registry.versions())) if core.registry else []
        gates = [(v, (v.manifest.get("eval") or {}).get("candidate") or {}) for v in versions]
        queue = core.generation.queued() if core.generation is not None else None
        return console.page(
            request,
            "overview.html",
            "Overview",
            bars=bars,
            by_day=by_day,
            stats=reply_stats(core.store),
            gates=gates,
            queue=queue,
            exchanges=core.store.count_exchanges(),
            pending=len(core.pending_corrections()),
            examples=core.examples.count(),
        )

    return [Route("/", overview, methods=["GET"])]
