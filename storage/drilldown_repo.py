"""What a breaker event's window held, row by row: the reads behind a drill-down (engine/drilldown.py).

Every read takes the event's window (events_repo.Window: what happened in it, plus the rows judged on
arrival that arrived in it) and ``seen_by``, the latest ``ingested_at`` the breaker could have seen when it
tripped: evidence stored after the trip (a late report, a backfill) is not what made it trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.events_repo import Window, arrived_outside
from storage.tables import breaker_events as EVENTS
from storage.tables import command_events as CMD
from storage.tables import incidents as INC
from storage.tables import phase_history as PHASES
from storage.tables import safety_events as SAF


def _in_window(conn: Connection, table: sa.Table, w: Window, seen_by: datetime) -> sa.ColumnElement:
    """The rows of ``table`` the breaker judged: stamped in the window, or judged on arrival and arrived
    in it; stored by ``seen_by``. The OR (which costs the timestamp index its use on SQLite) only when
    a row judged on arrival is there at all (one seek of the arrivals index, as events_repo does)."""
    happened = sa.and_(table.c.at >= w.start, table.c.at < w.end)
    arrived = sa.and_(*arrived_outside(table, w))
    if conn.execute(sa.select(sa.exists().where(arrived))).scalar_one():
        return sa.and_(sa.or_(happened, arrived), table.c.ingested_at <= seen_by)
    return sa.and_(happened, table.c.ingested_at <= seen_by)


def _command_where(conn: Connection, w: Window, seen_by: datetime, command_type: str | None,
                   autonomous_only: bool) -> list:
    where = [_in_window(conn, CMD, w, seen_by)]
    if command_type is not None:
        where.append(CMD.c.command_type == command_type)
    if autonomous_only:
        where.append(CMD.c.autonomous.is_(True))
    return where


def command_rows(conn: Connection, w: Window, seen_by: datetime, *, command_type: str | None = None,
                 autonomous_only: bool = False, statuses: Sequence[str] | None = None,
                 limit: int = 50) -> tuple[Sequence[Row], int]:
    """The newest ``limit`` command events of the window (of ``statuses`` when given), and how many
    there are in all."""
    where = _command_where(conn, w, seen_by, command_type, autonomous_only)
    if statuses:
        where.append(CMD.c.status.in_(tuple(statuses)))
    total = conn.execute(sa.select(sa.func.count()).select_from(CMD).where(*where)).scalar_one()
    rows = conn.execute(sa.select(CMD.c.command_id, CMD.c.command_type, CMD.c.status, CMD.c.at, CMD.c.autonomous,
                                  CMD.c.service, CMD.c.ingested_at)
                        .where(*where).order_by(CMD.c.at.desc(), CMD.c.id.desc()).limit(limit)).all()
    return rows, total


def _bucket(conn: Connection, col: sa.ColumnElement[Any], start: datetime,
            step_seconds: int) -> sa.ColumnElement[Any]:
    """The index of the step-long bucket from ``start`` that holds each row, computed in SQL."""
    origin = int(start.timestamp())
    if conn.dialect.name == "sqlite":
        # ``//``: integer division in SQL (SQLAlchemy 2 renders ``/`` on integers as a true division, ``x / (n
        # + 0.0)``, which gave every row a bucket of its own and fetched thousands of groups instead of 30)
        return (sa.cast(sa.func.strftime("%s", col), sa.Integer) - origin) // step_seconds
    return sa.cast(sa.func.floor((sa.func.extract("epoch", col) - origin) / step_seconds), sa.BigInteger)


def command_buckets(conn: Connection, w: Window, seen_by: datetime, step_seconds: int, *,
                    command_type: str | None = None, autonomous_only: bool = False
                    ) -> tuple[list[tuple[int, str, int]], list[tuple[int, int]]]:
    """Per bucket of the window: (bucket, status, command events) and (bucket, commands first seen in
    it) — the second adds up to the window's distinct commands, as the breaker counts ``total``."""
    where = _command_where(conn, w, seen_by, command_type, autonomous_only)
    b = _bucket(conn, CMD.c.at, w.start, step_seconds).label("b")
    by_status = [(int(r[0]), r[1], r[2]) for r in conn.execute(
        sa.select(b, CMD.c.status, sa.func.count()).where(*where).group_by(b, CMD.c.status))]
    first = sa.select(CMD.c.command_id, sa.func.min(CMD.c.at).label("first")).where(*where) \
        .group_by(CMD.c.command_id).subquery("f")
    fb = _bucket(conn, first.c.first, w.start, step_seconds).label("b")
    new = [(int(r[0]), r[1]) for r in conn.execute(sa.select(fb, sa.func.count()).group_by(fb))]
    return by_status, new


def outcome_sequence(conn: Connection, w: Window, seen_by: datetime, command_type: str) -> Sequence[Row]:
    """(at, status) of the type's succeeded, failed and rolled-back events in the window, oldest first."""
    where = _command_where(conn, w, seen_by, command_type, False)
    where.append(CMD.c.status.in_(("succeeded", "failed", "rolled_back")))
    return conn.execute(sa.select(CMD.c.at, CMD.c.status).where(*where).order_by(CMD.c.at, CMD.c.id)).all()


def incident_rows(conn: Connection, w: Window, seen_by: datetime, *, limit: int = 50) -> tuple[Sequence[Row], int]:
    """The window's incidents, oldest first, each with the type of the command it names and whether that
    command was autonomous (None when it names none, or one the store has not seen)."""
    where = _in_window(conn, INC, w, seen_by)
    total = conn.execute(sa.select(sa.func.count()).select_from(INC).where(where)).scalar_one()
    named_type = (sa.select(CMD.c.command_type).where(CMD.c.command_id == INC.c.command_id)
                  .limit(1).scalar_subquery())
    autonomous = sa.exists().where(CMD.c.command_id == INC.c.command_id, CMD.c.autonomous.is_(True))
    rows = conn.execute(sa.select(INC.c.incident_id, INC.c.severity, INC.c.command_id, INC.c.service, INC.c.at,
                                  named_type.label("command_type"), autonomous.label("autonomous"))
                        .where(where).order_by(INC.c.at, INC.c.id).limit(limit)).all()
    return rows, total


def safety_rows(conn: Connection, w: Window, seen_by: datetime, *, limit: int = 50) -> tuple[Sequence[Row], int]:
    where = _in_window(conn, SAF, w, seen_by)
    total = conn.execute(sa.select(sa.func.count()).select_from(SAF).where(where)).scalar_one()
    rows = conn.execute(sa.select(SAF.c.type, SAF.c.at).where(where).order_by(SAF.c.at, SAF.c.id)
                        .limit(limit)).all()
    return rows, total


def previous_resolution(conn: Connection, event_id: str, rule_name: str, command_type: str | None,
                        after: datetime, before: datetime) -> datetime | None:
    """When an earlier event of the same rule and scope was resolved inside (after, before): the breaker
    then judged only what arrived after that resolution."""
    scope = EVENTS.c.command_type.is_(None) if command_type is None else EVENTS.c.command_type == command_type
    return conn.execute(sa.select(sa.func.max(EVENTS.c.resolved_at)).where(
        EVENTS.c.rule_name == rule_name, scope, EVENTS.c.id != event_id, EVENTS.c.resolved.is_(True),
        EVENTS.c.resolved_at > after, EVENTS.c.resolved_at < before)).scalar_one()


def reversion_of(conn: Connection, event_id: str) -> Row | None:
    """The phase-history entry a trip's reversion to L3 started, with the phase it ended."""
    entry = conn.execute(sa.select(PHASES).where(PHASES.c.breaker_event_id == event_id)
                         .order_by(PHASES.c.id).limit(1)).first()
    return entry


def phase_before(conn: Connection, entry_id: int) -> str | None:
    return conn.execute(sa.select(PHASES.c.phase).where(PHASES.c.id < entry_id)
                        .order_by(PHASES.c.id.desc()).limit(1)).scalar_one_or_none()


def as_dicts(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in rows]


def commands_named(conn: Connection, command_ids: Sequence[str], *, limit: int = 50) -> Sequence[Row]:
    """The events of the commands the window's incidents name (whenever they were stamped), newest first."""
    if not command_ids:
        return []
    return conn.execute(sa.select(CMD.c.command_id, CMD.c.command_type, CMD.c.status, CMD.c.at, CMD.c.autonomous,
                                  CMD.c.service, CMD.c.ingested_at)
                        .where(CMD.c.command_id.in_(tuple(command_ids)))
                        .order_by(CMD.c.at.desc(), CMD.c.id.desc()).limit(limit)).all()
