"""Reads for backtests (issue 16 pt 3), in time order and a piece at a time, so a replay holds only what
its window needs instead of the whole history: the command counts per bucket grouped in SQL a day at a
time; the outcome events streamed in chunks (an iterating cursor on SQLite, a server-side cursor on
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage import events_repo, rollups
from storage.tables import command_events as CMD

#: rows fetched per round trip
CHUNK = 5000


def _stream(conn: Connection, query: Any) -> Iterator[Any]:
    result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
    try:
        yield from result
    finally:
        result.close()


#: the counts of a bucket, in this order: distinct commands, then events per status
FIELDS: tuple[str, ...] = ("total", *events_repo.STATUSES)

#: seconds of history one query covers: each sorts a day of events, not the whole range at once
CHUNK_SECONDS = 86_400

Bucket = tuple[int, str, tuple[int, ...], tuple[int, ...] | None]


def bucket_count_chunks(conn: Connection, start: datetime, end: datetime, step_seconds: int, *,
                        by_type: bool, autonomous: bool) -> Iterator[list[Bucket]]:
    """The command counts of [start, end) per step-long bucket, in bucket order, a day's buckets at a time:
    (bucket, command type or "" when not ``by_type``, counts in FIELDS order, the autonomous commands'
    counts in FIELDS order or None when not ``autonomous``). One scan, grouped in SQL a day at a time, so
    each sort stays small and the caller holds only the days it is using.

    A command counts once in a bucket's total (once per type, ``by_type``), however many of its events
    lie there; the autonomous total counts the commands with an autonomous event there."""
    b = events_repo._bucket(conn, CMD.c.at, step_seconds).label("b")
    keys: list[sa.ColumnElement[Any]] = [b, CMD.c.command_type] if by_type else [b]
    auto = CMD.c.autonomous.is_(True)
    distinct = rollups.distinct_ids(conn, CMD.c.command_id)
    columns: list[sa.ColumnElement[Any]] = [distinct]
    columns += [sa.func.count().filter(CMD.c.status == s) for s in events_repo.STATUSES]
    if autonomous:
        columns.append(distinct.filter(auto))
        columns += [sa.func.count().filter(sa.and_(auto, CMD.c.status == s)) for s in events_repo.STATUSES]
    n, width = len(keys), len(FIELDS)
    for lo, hi in _chunks(start, end, step_seconds):
        q = (sa.select(*keys, *columns).where(events_repo._period(CMD.c.at, lo, hi))
             .group_by(*keys).order_by(b))
        yield [(int(r[0]), r[1] if by_type else "", tuple(r[n:n + width]),
                tuple(r[n + width:]) if autonomous else None) for r in conn.execute(q)]


def _chunks(start: datetime, end: datetime, step_seconds: int) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut at bucket edges about a day apart, so no bucket is split between two queries."""
    span = max(1, CHUNK_SECONDS // step_seconds) * step_seconds
    edge = (int(start.timestamp()) // span + 1) * span
    lo = start
    while lo < end:
        hi = min(datetime.fromtimestamp(edge, tz=UTC), end)
        yield lo, hi
        lo, edge = hi, edge + span


def stream_outcome_times(conn: Connection, start: datetime,
                         end: datetime) -> Iterator[tuple[str, str, datetime]]:
    """``events_repo.outcome_times`` as an iterator: (command_type, status, at) of every succeeded, failed
    and rolled-back event in [start, end), ordered by at (what a consecutive-failures replay slides over)."""
    q = (sa.select(CMD.c.command_type, CMD.c.status, CMD.c.at)
         .where(events_repo._period(CMD.c.at, start, end),
                CMD.c.status.in_(("succeeded", *events_repo.FAILURE_STATUSES)))
         .order_by(CMD.c.at))
    for r in _stream(conn, q):
        yield r[0], r[1], r[2]
