"""Durable store of exchanges, votes, corrections and conversation state, on SQLite (a file in WAL
mode, the default) or PostgreSQL (shared by replicas): one implementation in SQLAlchemy Core.

Every write commits before the method returns, so when the bot says it has something, it has it.
Conversation history is read back from the exchanges themselves: one source of truth.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Executable, Row, Table, and_, case, delete, false, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.stores.database import WRITE, database_url, insert, migrate, open_engine, write_lock
from bot.stores.records import (
    SEEN_EVENTS_KEEP_S,
    Correction,
    Exchange,
    conversation_resets,
    correction_from_row,
    corrections,
    example_sync,
    exchange_from_row,
    exchanges,
    message_links,
    seen_events,
    votes,
)
from bot.types import ConversationKey, ReplyStats, Turn

log = logging.getLogger(__name__)
# A cleared prompt reads back as none recorded: training then rebuilds it as serving would.
CLEARED_PROMPT = "[]"
# Correction ids are 8 hex digits (short enough to type); a taken one is drawn again, at most this often.
CORRECTION_ID_TRIES = 5


def storable(text: str) -> str:
    """PostgreSQL refuses NUL in text (SQLite keeps it): the same text on both, NUL as U+FFFD."""
    return text.replace("\x00", "\ufffd")


class FeedbackStore:
    """A SQLite file (a path) or a PostgreSQL database (a `postgresql://` URL); safe to share across
    threads, and across processes and replicas on the same database."""

    prune_interval_s = 60.0  # how often claim_event may prune old event ids (a cheap indexed delete)

    def __init__(self, target: str | Path) -> None:
        self.url = database_url(target)
        self.engine = open_engine(self.url)
        self.dialect = self.engine.dialect.name  # "sqlite" or "postgresql"
        self._insert = insert(self.engine)
        self._writer = self.engine.execution_options(**{WRITE: True})
        self._write_lock = write_lock(self.engine)
        self._last_prune = float("-inf")  # time.monotonic() of claim_event's last prune
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._write_lock, self._writer.begin() as connection:
            yield connection

    def _upsert(self, db: Connection, table: Table, keys: list[str], **values: Any) -> None:
        """Insert a row, or update the other columns of the row with the same `keys`."""
        statement = self._insert(table).values(**values)
        changes = {column: statement.excluded[column] for column in values if column not in keys}
        db.execute(statement.on_conflict_do_update(index_elements=keys, set_=changes))

    def rows(self, statement: Executable) -> Sequence[Row[Any]]:
        with self.engine.connect() as connection:
            return connection.execute(statement).all()

    def _scalar(self, statement: Executable) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(statement).scalar()

    # exchanges ---------------------------------------------------------------------------------

    def add_exchange(
        self,
        conversation: ConversationKey,
        user_id: str,
        user_text: str,
        reply: str,
        prompt: list[dict[str, str]],
        example_ids: tuple[str, ...],
        lora_version: str | None,
        stats: ReplyStats,
        scope: str,
        retriever_version: str | None = None,
        stopped: bool = False,
    ) -> str:
        """`retriever_version`: the LoRA version whose query adapter chose the examples (None: the
        embedder alone); `stopped`: the asker stopped the reply part-written."""
        exchange_id = uuid.uuid4().hex
        with self._tx() as db:
            db.execute(
                exchanges.insert().values(
                    id=exchange_id,
                    created_at=time.time(),
                    platform=conversation.platform,
                    conversation=conversation.as_str(),
                    user_id=user_id,
                    user_text=storable(user_text),
                    reply=storable(reply),
                    prompt_json=json.dumps(prompt, ensure_ascii=False),
                    example_ids_json=json.dumps(list(example_ids)),
                    lora_version=lora_version,
                    **dataclasses.asdict(stats),  # a column of each name
                    scope=scope,
                    retriever_version=retriever_version,
                    stopped=stopped,
                )
            )
        return exchange_id

    def exchange(self, exchange_id: str) -> Exchange | None:
        rows = self.rows(select(exchanges).where(exchanges.c.id == exchange_id))
        return exchange_from_row(rows[0]._mapping) if rows else None

    def exchanges(self, limit: int | None = None) -> list[Exchange]:
        statement = select(exchanges).order_by(exchanges.c.created_at)
        rows = self.rows(statement.limit(limit) if limit else statement)
        return [exchange_from_row(row._mapping) for row in rows]

    def count_exchanges(self) -> int:
        return int(self._scalar(select(func.count()).select_from(exchanges)))

    def history(self, conversation: ConversationKey, turns: int) -> list[Turn]:
        """The last `turns` exchanges of a conversation since its last reset, oldest first."""
        if turns <= 0:
            return []
        key = conversation.as_str()
        reset_at = select(conversation_resets.c.reset_at).where(conversation_resets.c.conversation == key)
        rows = self.rows(
            select(exchanges.c.user_text, exchanges.c.reply)
            .where(exchanges.c.conversation == key, exchanges.c.stopped == false())  # a stopped reply is no turn
            .where(exchanges.c.created_at > func.coalesce(reset_at.scalar_subquery(), 0))
            .order_by(exchanges.c.created_at.desc())
            .limit(turns)
        )
        return [Turn(row.user_text, row.reply) for row in reversed(rows)]

    def has_history(self, conversation: ConversationKey) -> bool:
        return bool(self.rows(select(1).where(exchanges.c.conversation == conversation.as_str()).limit(1)))

    def latest_exchange(self, conversation: ConversationKey) -> str | None:
        """The id of the bot's latest reply in a conversation (a reset forgets history, not replies)."""
        return self._scalar(
            select(exchanges.c.id)
            .where(exchanges.c.conversation == conversation.as_str())
            .order_by(exchanges.c.created_at.desc())
            .limit(1)
        )

    def clear_old_prompts(self, older_than_days: float) -> int:
        """Clear the full prompt of exchanges older than `older_than_days` (retention.prompt_days);
        the row, its reply, example ids and LoRA version stay: they trace the reply. Returns how many."""
        cutoff = time.time() - older_than_days * 86400
        with self._tx() as db:
            result = db.execute(
                update(exchanges)
                .where(exchanges.c.created_at < cutoff, exchanges.c.prompt_json != CLEARED_PROMPT)
                .values(prompt_json=CLEARED_PROMPT)
            )
        return int(result.rowcount)

    def reset(self, conversation: ConversationKey) -> None:
        with self._tx() as db:
            self._upsert(
                db, conversation_resets, ["conversation"], conversation=conversation.as_str(), reset_at=time.time()
            )

    # platform message links and dedup ----------------------------------------------------------

    def link_message(self, exchange_id: str, platform: str, message_ref: str) -> None:
        with self._tx() as db:
            self._upsert(
                db,
                message_links,
                ["platform", "message_ref"],
                platform=platform,
                message_ref=message_ref,
                exchange_id=exchange_id,
            )

    def exchange_for_message(self, platform: str, message_ref: str) -> str | None:
        return self._scalar(
            select(message_links.c.exchange_id).where(
                message_links.c.platform == platform, message_links.c.message_ref == message_ref
            )
        )

    def claim_event(self, platform: str, event_id: str) -> bool:
        """True the first time (platform, event_id) is seen, and for an event without an id ('');
        False for every repeat within a day. Atomic across processes and replicas: the primary key
        decides, in the database."""
        if not event_id:
            return True
        now = time.time()
        claim = self._insert(seen_events).values(platform=platform, event_id=event_id, seen_at=now)
        # An INSERT's rowcount is kept only on request (SQLAlchemy keeps it for UPDATE and DELETE alone).
        claim = claim.on_conflict_do_nothing(index_elements=["platform", "event_id"]).execution_options(
            preserve_rowcount=True
        )
        if time.monotonic() - self._last_prune >= self.prune_interval_s:
            self._last_prune = time.monotonic()
            self._prune_events(now - SEEN_EVENTS_KEEP_S)
        with self._tx() as db:
            return db.execute(claim).rowcount == 1

    def _prune_events(self, before: float) -> None:
        # Housekeeping in its own transaction: if it fails (on PostgreSQL, say, a deadlock with
        # another replica's prune), the claim still goes ahead and the next prune catches up.
        try:
            with self._tx() as db:
                db.execute(delete(seen_events).where(seen_events.c.seen_at < before))
        except DBAPIError as exc:
            log.warning("could not prune old event ids (next time): %s", exc)

    # votes -------------------------------------------------------------------------------------

    def set_vote(self, exchange_id: str, platform: str, user_id: str, value: int, reason: str | None = None) -> int:
        """Record a vote (+1/-1; 0 retracts). The last vote of a user wins; a 👎's `reason` is kept
        until the same user gives another (None: keep the one given). Returns the net score."""
        if value not in (-1, 0, 1):
            raise ValueError(f"a vote is -1, 0 or +1, not {value!r}")
        mine = and_(votes.c.exchange_id == exchange_id, votes.c.platform == platform, votes.c.user_id == user_id)
        with self._tx() as db:
            if reason is None and value < 0:  # in the write's transaction: a reason given meanwhile is kept
                reason = db.execute(select(votes.c.reason).where(mine, votes.c.value < 0)).scalar()
            if value == 0:
                db.execute(delete(votes).where(mine))
            else:
                keys = ["exchange_id", "platform", "user_id"]
                self._upsert(
                    db,
                    votes,
                    keys,
                    exchange_id=exchange_id,
                    platform=platform,
                    user_id=user_id,
                    value=value,
                    updated_at=time.time(),
                    reason=reason if value < 0 else None,
                )
            _queue_sync(self._insert, db, "exchange", exchange_id)
            return int(db.execute(_sum_of(votes.c.value, exchange_id)).scalar_one())

    def user_vote(self, exchange_id: str, platform: str, user_id: str) -> int:
        value = self._scalar(
            select(votes.c.value).where(
                votes.c.exchange_id == exchange_id, votes.c.platform == platform, votes.c.user_id == user_id
            )
        )
        return int(value or 0)

    def promotion_score(self, exchange_id: str, asker_platform: str, asker_id: str, asker_counts: bool) -> int:
        """The net score that decides whether a reply becomes an example: the asker's own 👍 counts
        only when `asker_counts` (an admin); their 👎 always counts."""
        own_upvote = and_(votes.c.platform == asker_platform, votes.c.user_id == asker_id, votes.c.value > 0)
        counted = votes.c.value if asker_counts else case((own_upvote, 0), else_=votes.c.value)
        return int(self._scalar(_sum_of(counted, exchange_id)))

    def voters(self, exchange_id: str, value: int = 1) -> set[tuple[str, str]]:
        """(platform, user id) of everyone whose vote on the exchange is a 👍 (`value` 1) or a 👎 (-1)."""
        chosen = votes.c.value > 0 if value > 0 else votes.c.value < 0
        rows = self.rows(select(votes.c.platform, votes.c.user_id).where(votes.c.exchange_id == exchange_id, chosen))
        return {(row.platform, row.user_id) for row in rows}

    def reasons(self, exchange_id: str | None = None) -> dict[str, int]:
        """How many 👎 give each reason, on one exchange or on all."""
        statement = select(votes.c.reason, func.count()).where(votes.c.value < 0, votes.c.reason.is_not(None))
        if exchange_id is not None:
            statement = statement.where(votes.c.exchange_id == exchange_id)
        return {row[0]: int(row[1]) for row in self.rows(statement.group_by(votes.c.reason).order_by(votes.c.reason))}

    def score(self, exchange_id: str) -> int:
        return int(self._scalar(_sum_of(votes.c.value, exchange_id)))

    def scored_exchanges(self) -> list[tuple[Exchange, int]]:
        """Every exchange that has votes, with its net score."""
        rows = self.rows(
            select(exchanges, func.sum(votes.c.value).label("net_score"))
            .join(votes, votes.c.exchange_id == exchanges.c.id)
            .group_by(exchanges.c.id)  # both allow the other columns: they depend on the primary key
            .order_by(exchanges.c.created_at)
        )
        return [(exchange_from_row(row._mapping), int(row.net_score)) for row in rows]

    # corrections -------------------------------------------------------------------------------

    def add_correction(
        self, exchange_id: str | None, platform: str, user_id: str, question: str, answer: str, accepted_by: str | None
    ) -> Correction:
        """Store a correction under a short id admins can type (`feedback accept ID`): 8 hex digits,
        drawn again should one already be taken."""
        now = time.time()
        for attempt in range(CORRECTION_ID_TRIES):
            correction = Correction(
                id=uuid.uuid4().hex[:8],
                created_at=now,
                exchange_id=exchange_id,
                platform=platform,
                user_id=user_id,
                question=storable(question),
                answer=storable(answer),
                status="accepted" if accepted_by else "pending",
                reviewed_by=accepted_by,
            )
            try:
                with self._tx() as db:
                    db.execute(
                        corrections.insert().values(
                            id=correction.id,
                            created_at=now,
                            exchange_id=exchange_id,
                            platform=platform,
                            user_id=user_id,
                            question=correction.question,
                            answer=correction.answer,
                            status=correction.status,
                            reviewed_by=accepted_by,
                            reviewed_at=now if accepted_by else None,
                        )
                    )
                    if accepted_by:
                        _queue_sync(self._insert, db, "correction", correction.id)
                return correction
            except IntegrityError:
                if attempt == CORRECTION_ID_TRIES - 1 or self.correction(correction.id) is None:
                    raise  # not the id (or never a free one): a real error
                log.info("correction id %s was taken; drawing another", correction.id)
        raise AssertionError("unreachable")

    def count_pending_corrections(self, platform: str, user_id: str) -> int:
        mine = and_(corrections.c.platform == platform, corrections.c.user_id == user_id)
        return int(self._scalar(select(func.count()).where(mine, corrections.c.status == "pending")))

    def corrections(self, status: str | None = None) -> list[Correction]:
        statement = select(corrections).order_by(corrections.c.created_at)
        rows = self.rows(statement.where(corrections.c.status == status) if status else statement)
        return [correction_from_row(row._mapping) for row in rows]

    def review_correction(self, correction_id: str, accept: bool, reviewer: str) -> Correction | None:
        """Accept or reject a pending correction; None when no pending correction has that id."""
        with self._tx() as db:
            result = db.execute(
                update(corrections)
                .where(corrections.c.id == correction_id, corrections.c.status == "pending")
                .values(status="accepted" if accept else "rejected", reviewed_by=reviewer, reviewed_at=time.time())
            )
            if result.rowcount != 1:
                return None
            if accept:
                _queue_sync(self._insert, db, "correction", correction_id)
            row = db.execute(select(corrections).where(corrections.c.id == correction_id)).one()
        return correction_from_row(row._mapping)

    def correction(self, correction_id: str) -> Correction | None:
        rows = self.rows(select(corrections).where(corrections.c.id == correction_id))
        return correction_from_row(rows[0]._mapping) if rows else None

    # examples owed to the example store --------------------------------------------------------

    def pending_example_syncs(self) -> list[tuple[str, str]]:
        """(kind, ref) of feedback whose example the example store may not have yet, oldest first."""
        rows = self.rows(select(example_sync.c.kind, example_sync.c.ref).order_by(example_sync.c.queued_at))
        return [(row.kind, row.ref) for row in rows]

    def example_synced(self, kind: str, ref: str) -> None:
        with self._tx() as db:
            db.execute(delete(example_sync).where(example_sync.c.kind == kind, example_sync.c.ref == ref))


def _sum_of(counted: Any, exchange_id: str) -> Executable:
    """The net of `counted` over an exchange's votes (0 when it has none)."""
    return select(func.coalesce(func.sum(counted), 0)).where(votes.c.exchange_id == exchange_id)


def _queue_sync(insert: Any, db: Connection, kind: str, ref: str) -> None:
    queued = insert(example_sync).values(kind=kind, ref=ref, queued_at=time.time())
    db.execute(queued.on_conflict_do_nothing(index_elements=["kind", "ref"]))
