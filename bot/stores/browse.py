"""Reading the feedback store the way an admin browses it (the console, bot/web/): exchanges filtered
and paged, the votes and corrections of one, and counts by day. Read-only, over the store's own
tables and connection, so SQLite and PostgreSQL answer alike."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, exists, func, or_, select

from bot.stores.feedback import FeedbackStore
from bot.stores.records import (
    Correction,
    Exchange,
    correction_from_row,
    corrections,
    exchange_from_row,
    exchanges,
    votes,
)

VoteFilter = Literal["", "up", "down", "none"]


@dataclass(frozen=True)
class ExchangeFilter:
    platform: str = ""
    workspace: str = ""  # a scope, or its start: "slack:T01" finds that workspace's and its DMs'
    vote: VoteFilter = ""
    corrected: bool = False
    lora: str = ""  # a version, or "base" for the base model
    since: dt.date | None = None
    until: dt.date | None = None
    text: str = ""  # in the question or the reply


@dataclass(frozen=True)
class VoteRow:
    platform: str
    user_id: str
    value: int
    reason: str | None
    at: float


def find_exchanges(
    store: FeedbackStore, f: ExchangeFilter, offset: int = 0, limit: int = 25
) -> tuple[list[Exchange], int]:
    """One page of exchanges, newest first, and how many match in all."""
    conditions: list[Any] = []
    if f.platform:
        conditions.append(exchanges.c.platform == f.platform)
    if f.workspace:
        conditions.append(or_(exchanges.c.scope == f.workspace, exchanges.c.scope.startswith(f.workspace + ":")))
    voted = select(votes.c.exchange_id).where(votes.c.exchange_id == exchanges.c.id)
    if f.vote == "up":
        conditions.append(exists(voted.where(votes.c.value > 0)))
    elif f.vote == "down":
        conditions.append(exists(voted.where(votes.c.value < 0)))
    elif f.vote == "none":
        conditions.append(~exists(voted))
    if f.corrected:
        conditions.append(exists(select(corrections.c.id).where(corrections.c.exchange_id == exchanges.c.id)))
    if f.lora == "base":
        conditions.append(exchanges.c.lora_version.is_(None))
    elif f.lora:
        conditions.append(exchanges.c.lora_version == f.lora)
    if f.since:
        conditions.append(exchanges.c.created_at >= _epoch(f.since))
    if f.until:
        conditions.append(exchanges.c.created_at < _epoch(f.until + dt.timedelta(days=1)))
    if f.text:
        pattern = f"%{f.text.lower()}%"
        conditions.append(
            or_(func.lower(exchanges.c.user_text).like(pattern), func.lower(exchanges.c.reply).like(pattern))
        )
    where = and_(True, *conditions)
    total = int(store.rows(select(func.count()).select_from(exchanges).where(where))[0][0])
    page = store.rows(
        select(exchanges).where(where).order_by(exchanges.c.created_at.desc()).offset(offset).limit(limit)
    )
    return [exchange_from_row(row._mapping) for row in page], total


def votes_of(store: FeedbackStore, exchange_id: str) -> list[VoteRow]:
    rows = store.rows(select(votes).where(votes.c.exchange_id == exchange_id).order_by(votes.c.updated_at))
    return [VoteRow(r.platform, r.user_id, r.value, r.reason, r.updated_at) for r in rows]


def corrections_of(store: FeedbackStore, exchange_id: str) -> list[Correction]:
    rows = store.rows(
        select(corrections).where(corrections.c.exchange_id == exchange_id).order_by(corrections.c.created_at)
    )
    return [correction_from_row(row._mapping) for row in rows]


def conversation_around(store: FeedbackStore, exchange: Exchange, turns: int = 3) -> list[Exchange]:
    """The exchanges of the same conversation just before and after it, in order."""
    same = exchanges.c.conversation == exchange.conversation
    before = store.rows(
        select(exchanges)
        .where(same, exchanges.c.created_at < exchange.created_at)
        .order_by(exchanges.c.created_at.desc())
        .limit(turns)
    )
    after = store.rows(
        select(exchanges)
        .where(same, exchanges.c.created_at > exchange.created_at)
        .order_by(exchanges.c.created_at)
        .limit(turns)
    )
    return [exchange_from_row(r._mapping) for r in [*reversed(before), *after]]


def votes_by_day(store: FeedbackStore, days: int = 30) -> list[tuple[str, str, int, int]]:
    """(day, LoRA version or "base", 👍 count, 👎 count) over the last `days` days, by the vote's day."""
    since = dt.datetime.now(dt.UTC).timestamp() - days * 86400
    rows = store.rows(
        select(votes.c.updated_at, votes.c.value, exchanges.c.lora_version)
        .join(exchanges, exchanges.c.id == votes.c.exchange_id)
        .where(votes.c.updated_at >= since)
    )
    counted: dict[tuple[str, str], list[int]] = {}
    for at, value, version in rows:
        day = dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat()
        up_down = counted.setdefault((day, version or "base"), [0, 0])
        up_down[0 if value > 0 else 1] += 1
    return [(day, version, up, down) for (day, version), (up, down) in sorted(counted.items())]


def reply_stats(store: FeedbackStore, limit: int = 500) -> dict[str, Any]:
    """Over the newest `limit` exchanges: how many had a verified example, and the latency's median and p90."""
    rows = store.rows(
        select(exchanges.c.example_ids_json, exchanges.c.latency_s).order_by(exchanges.c.created_at.desc()).limit(limit)
    )
    latencies = sorted(r.latency_s for r in rows if r.latency_s is not None)
    with_example = sum(1 for r in rows if r.example_ids_json not in ("[]", ""))

    def pick(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    return {"replies": len(rows), "with_example": with_example, "latency_p50": pick(0.5), "latency_p90": pick(0.9)}


def _epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
