"""Streamed reads for backtests (issue 16 pt 3): the bucketed command counts in bucket order and the outcome
events in time order, fetched in chunks (an iterating cursor on SQLite, a server-side cursor on PostgreSQL),
so a replay holds only what one window needs instead of the whole history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage import events_repo, rollups
from storage.tables import command_events as CMD

#: rows fetched per round trip
CHUNK = 5000

Row5 = tuple[int, str, bool, str, int]


def _stream(conn: Connection, query: Any) -> Iterator[Any]:
    result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
    try:
        yield from result
    finally:
        result.close()


def stream_bucketed_commands(conn: Connection, start: datetime, end: datetime,
                             step_seconds: int) -> Iterator[Row5]:
    """``events_repo.bucketed_commands`` ordered by bucket, as an iterator. A step of whole hours reads
    the hourly rollups (a few thousand rows, sorted in memory); a shorter step streams a scan."""
    hours = rollups.whole_hours(start, end)
    if hours is not None and step_seconds % 3600 == 0:
        yield from sorted(events_repo.bucketed_commands(conn, start, end, step_seconds),
                          key=lambda r: r[0])
        return
    b = events_repo._bucket(conn, CMD.c.at, step_seconds).label("b")
    q = (sa.select(b, CMD.c.command_type, CMD.c.autonomous, CMD.c.status, sa.func.count())
         .where(events_repo._period(CMD.c.at, start, end))
         .group_by(b, CMD.c.command_type, CMD.c.autonomous, CMD.c.status).order_by(b))
    for r in _stream(conn, q):
        yield int(r[0]), r[1], bool(r[2]), r[3], int(r[4])


def stream_bucketed_totals(conn: Connection, start: datetime, end: datetime,
                           step_seconds: int) -> Iterator[Row5]:
    """``events_repo.bucketed_command_totals`` ordered by bucket, each row as (b, type, auto, "total", n)."""
    b = events_repo._bucket(conn, CMD.c.at, step_seconds).label("b")
    q = (sa.select(b, CMD.c.command_type, CMD.c.autonomous, sa.func.count(sa.distinct(CMD.c.command_id)))
         .where(events_repo._period(CMD.c.at, start, end))
         .group_by(b, CMD.c.command_type, CMD.c.autonomous).order_by(b))
    for r in _stream(conn, q):
        yield int(r[0]), r[1], bool(r[2]), "total", int(r[3])


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
