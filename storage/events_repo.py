"""Raw events: idempotent bulk inserts and the SQL aggregations that metrics are made of."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from storage.models import CommandEvent, EvalCoverage, Incident, SafetyEvent

CMD = CommandEvent.__table__
INC = Incident.__table__
SAF = SafetyEvent.__table__
EVC = EvalCoverage.__table__

_KEYS = {CMD.name: ["command_id", "status"], INC.name: ["incident_id"],
         SAF.name: ["event_key"], EVC.name: ["event_key"]}


def _insert_ignoring_duplicates(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert rows, skipping those whose idempotency key is stored already; returns how many were new."""
    if not rows:
        return 0
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = (dialect.insert(table).on_conflict_do_nothing(index_elements=_KEYS[table.name])
            .returning(table.c.id))
    return len(conn.execute(stmt, list(rows)).all())


def insert_command_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    return _insert_ignoring_duplicates(conn, CMD, rows)


def insert_incidents(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    return _insert_ignoring_duplicates(conn, INC, rows)


def insert_safety_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    return _insert_ignoring_duplicates(conn, SAF, rows)


def insert_eval_coverage(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    return _insert_ignoring_duplicates(conn, EVC, rows)


def _period(col, start: datetime, end: datetime):
    return sa.and_(col >= start, col < end)


def command_counts(conn: Connection, start: datetime, end: datetime, *, autonomous_only: bool = False,
                   command_type: str | None = None) -> dict[str, int]:
    """Distinct commands per status in [start, end), plus ``total`` distinct commands.

    ``(command_id, status)`` is unique, so a row count per status is a count of distinct commands.
    """
    where = [_period(CMD.c.at, start, end)]
    if autonomous_only:
        where.append(CMD.c.autonomous.is_(True))
    if command_type is not None:
        where.append(CMD.c.command_type == command_type)
    per_status = conn.execute(
        sa.select(CMD.c.status, sa.func.count()).where(*where).group_by(CMD.c.status)).all()
    counts = {status: n for status, n in per_status}
    counts["total"] = conn.execute(
        sa.select(sa.func.count(sa.distinct(CMD.c.command_id))).where(*where)).scalar_one()
    return counts


def command_counts_by_type(conn: Connection, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """{command_type: {status: distinct commands, 'total': distinct commands}} in [start, end)."""
    where = _period(CMD.c.at, start, end)
    out: dict[str, dict[str, int]] = {}
    for ctype, status, n in conn.execute(
            sa.select(CMD.c.command_type, CMD.c.status, sa.func.count()).where(where)
            .group_by(CMD.c.command_type, CMD.c.status)):
        out.setdefault(ctype, {})[status] = n
    for ctype, n in conn.execute(
            sa.select(CMD.c.command_type, sa.func.count(sa.distinct(CMD.c.command_id))).where(where)
            .group_by(CMD.c.command_type)):
        out.setdefault(ctype, {})["total"] = n
    return out


def incident_counts(conn: Connection, start: datetime, end: datetime) -> dict[str, int]:
    """total, critical, and fromAutonomousActions (incidents naming a command sent as autonomous)."""
    where = _period(INC.c.at, start, end)
    autonomous_cmd = sa.exists().where(CMD.c.command_id == INC.c.command_id, CMD.c.autonomous.is_(True))
    row = conn.execute(sa.select(
        sa.func.count(),
        sa.func.count().filter(INC.c.severity == "critical"),
        sa.func.count().filter(autonomous_cmd),
        sa.func.count().filter(INC.c.severity == "critical", INC.c.command_id.is_not(None)),
    ).where(where)).one()
    return {"total": row[0], "critical": row[1], "fromAutonomousActions": row[2],
            "criticalFromCommands": row[3]}


def incident_severities(conn: Connection, start: datetime, end: datetime) -> set[str]:
    return set(conn.execute(sa.select(INC.c.severity).where(_period(INC.c.at, start, end))
                            .distinct()).scalars())


def safety_counts(conn: Connection, start: datetime, end: datetime) -> dict[str, int]:
    rows = conn.execute(sa.select(SAF.c.type, sa.func.count()).where(_period(SAF.c.at, start, end))
                        .group_by(SAF.c.type)).all()
    return {t: n for t, n in rows}


def latest_eval_coverage(conn: Connection, start: datetime, end: datetime):
    return conn.execute(sa.select(EVC.c.covered, EVC.c.total, EVC.c.at)
                        .where(_period(EVC.c.at, start, end))
                        .order_by(EVC.c.at.desc(), EVC.c.id.desc()).limit(1)).first()


def command_activity(conn: Connection, start: datetime, end: datetime, bucket_seconds: int) -> list[tuple]:
    """(bucket start epoch, status, count) for volume plots; buckets are computed in SQL."""
    if conn.dialect.name == "sqlite":
        epoch = sa.cast(sa.func.strftime("%s", CMD.c.at), sa.Integer)
    else:
        epoch = sa.cast(sa.func.extract("epoch", CMD.c.at), sa.BigInteger)
    bucket = (epoch / bucket_seconds) * bucket_seconds if conn.dialect.name == "sqlite" else \
        sa.func.floor(epoch / bucket_seconds) * bucket_seconds
    rows = conn.execute(sa.select(bucket.label("b"), CMD.c.status, sa.func.count())
                        .where(_period(CMD.c.at, start, end)).group_by("b", CMD.c.status).order_by("b"))
    return [(int(b), s, n) for b, s, n in rows]


def count_rows(conn: Connection, tables: Iterable[sa.Table]) -> dict[str, int]:
    return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables}
