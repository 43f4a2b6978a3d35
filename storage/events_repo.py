"""Raw events: idempotent bulk inserts and the SQL aggregations that metrics are made of."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage import rollups
from storage.tables import command_events as CMD
from storage.tables import eval_coverage as EVC
from storage.tables import incidents as INC
from storage.tables import safety_events as SAF
from storage.types import UTCDateTime

_KEYS = {CMD.name: ["command_id", "status"], INC.name: ["incident_id"],
         SAF.name: ["event_key"], EVC.name: ["event_key"]}


def _insert_ignoring_duplicates(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert rows, skipping those whose idempotency key is stored already; returns how many were new.

    On SQLite the rows go to the driver in one executemany, counted by its rowcount (a skipped row
    changes nothing): SQLAlchemy's per-value type processing and fetching RETURNING rows were over half
    of ingest time (docs/performance.md). psycopg reports no rowcount here, so PostgreSQL counts the
    RETURNING rows.
    """
    if not rows:
        return 0
    tracker = rollups.InsertTracker(conn, rows) if table is CMD else None
    if conn.dialect.name == "sqlite":
        stored = _sqlite_insert_ignoring_duplicates(conn, table, rows)
    else:
        stored = len(_postgres_insert_ignoring_duplicates(conn, table, rows, tracker))
    if tracker is not None:
        tracker.after(stored)
    return stored


def _postgres_insert_ignoring_duplicates(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]],
                                         tracker: rollups.InsertTracker | None = None) -> list[int]:
    """The ids of the rows inserted (a row whose key is stored already returns nothing).

    command_events is partitioned by month (storage/partitions.py): no unique constraint on the parent
    can name (command_id, status), so the rows whose key the tracker read as stored (or that repeat
    one earlier in the batch) are left out first; the conflict clause without a target then only
    guards the per-partition unique indexes.

    The rows go as one array parameter per column (``INSERT … SELECT * FROM unnest(…)``): an INSERT
    with a VALUES row per event had psycopg parse 9,000 placeholders a statement, 65 µs of CPU per
    event (1.3 s per 20,000-event batch; now 0.5 s, most of it the server's: docs/performance.md)."""
    if tracker is not None:
        rows = tracker.unstored()
        if not rows:
            return []
    columns = tuple(rows[0])
    sql = _postgres_insert_sql(conn, table, columns, tracker is not None)
    values = [[row[c] for row in rows] for c in columns]  # column-wise, as the arrays go
    for i, column in enumerate(columns):
        kind = table.c[column].type
        if isinstance(kind, UTCDateTime):
            values[i] = [_naive_utc(v) for v in values[i]]
        elif isinstance(kind, sa.Boolean):  # 0/1 as SQLAlchemy's Boolean takes them (an int array is no bool[])
            values[i] = [None if v is None else bool(v) for v in values[i]]
    return list(conn.exec_driver_sql(sql, tuple(values)).scalars())


_POSTGRES_INSERTS: dict[tuple[str, tuple[str, ...], bool], str] = {}


def _postgres_insert_sql(conn: Connection, table: sa.Table, columns: tuple[str, ...], any_conflict: bool) -> str:
    sql = _POSTGRES_INSERTS.get((table.name, columns, any_conflict))
    if sql is None:
        # each column's type as an array: VARCHAR(200) -> VARCHAR[] (the column's own length still applies)
        arrays = [re.sub(r"\(.*\)", "", table.c[c].type.compile(dialect=conn.dialect)) + "[]" for c in columns]
        target = "" if any_conflict else f" ({', '.join(_KEYS[table.name])})"
        sql = _POSTGRES_INSERTS[(table.name, columns, any_conflict)] = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"SELECT * FROM unnest({', '.join(f'%b::{a}' for a in arrays)}) "
            f"ON CONFLICT{target} DO NOTHING RETURNING id")
    return sql


def _naive_utc(value: datetime | None) -> datetime | None:
    """What UTCDateTime binds on PostgreSQL: naive UTC (an aware value cast to timestamp would take the
    session's time zone)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


_SQLITE_INSERTS: dict[tuple[str, tuple[str, ...]], str] = {}


def _sqlite_insert_ignoring_duplicates(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    columns = tuple(rows[0])
    sql = _SQLITE_INSERTS.get((table.name, columns))
    if sql is None:
        sql = _SQLITE_INSERTS[(table.name, columns)] = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(_KEYS[table.name])}) DO NOTHING")
    values = [[row[c] for row in rows] for c in columns]  # column-wise: conversions run in C loops
    for i, column in enumerate(columns):
        if isinstance(table.c[column].type, UTCDateTime):
            col = values[i]
            if col.count(col[0]) == len(col):  # e.g. ingested_at, the same for a whole batch
                values[i] = [_sqlite_datetime(col[0])] * len(col)
            else:
                values[i] = list(map(_sqlite_datetime, col))
    return conn.exec_driver_sql(sql, list(zip(*values, strict=False))).rowcount


def _sqlite_datetime(value: datetime | None) -> str | None:
    """What UTCDateTime stores on SQLite: naive UTC as SQLAlchemy spells it, 'YYYY-MM-DD HH:MM:SS.ffffff'."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without the +00:00


#: per table, the stored fields a resend of an event's key must repeat: a resend that differs is a
#: conflict (reported, and nothing stored changes), not a plain duplicate
COMPARED_FIELDS: dict[str, tuple[str, ...]] = {CMD.name: ("command_type", "autonomous", "service"),
                                               INC.name: ("severity", "command_id", "service")}


@dataclass
class Inserted:
    """What an insert of rows did, row by row (indexes into the rows given)."""

    stored: int                                      # rows stored now
    duplicate: int = 0                               # rows whose key was stored with the same values
    new: list[int] | None = None                     # the rows stored now (tables with COMPARED_FIELDS)
    conflicts: list[tuple[int, str, Any]] = field(default_factory=list)  # (row, field, stored value)


def insert_classified(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> Inserted:
    """Insert rows, skipping stored keys, and say which rows were new, duplicates or conflicts.

    Tables without COMPARED_FIELDS report counts only. The common case (every row new) costs one
    primary-key look and the insert; only when some key was stored already are the stored rows of
    the batch's keys read and compared. On SQLite the writer holds the store's only write lock, so
    the rows stored now are those above the highest id seen before the insert; PostgreSQL says which
    ids it inserted (RETURNING).
    """
    if not rows:
        return Inserted(0, new=[])
    compared = COMPARED_FIELDS.get(table.name)
    if compared is None:
        stored = _insert_ignoring_duplicates(conn, table, rows)
        return Inserted(stored, len(rows) - stored)
    tracker = rollups.InsertTracker(conn, rows) if table is CMD else None
    if conn.dialect.name == "sqlite":
        before = conn.exec_driver_sql(f"SELECT max(id) FROM {table.name}").scalar_one() or 0  # O(1), no compile
        stored = _sqlite_insert_ignoring_duplicates(conn, table, rows)
        is_new = lambda row_id: row_id > before  # noqa: E731
    else:
        ids = set(_postgres_insert_ignoring_duplicates(conn, table, rows, tracker))
        stored = len(ids)
        is_new = ids.__contains__
    if tracker is not None:
        tracker.after(stored)
    if stored == len(rows):
        return Inserted(stored, new=list(range(len(rows))))
    key_cols = _KEYS[table.name]
    stored_rows = _stored_by_key(conn, table, key_cols, compared, rows)
    out = Inserted(stored, new=[])
    seen: set[tuple] = set()
    for i, row in enumerate(rows):
        key = tuple(row[c] for c in key_cols)
        have = stored_rows.get(key)
        if have is None:  # skipped, then deleted by a concurrent prune: nothing to compare it with
            out.duplicate += 1
        elif key not in seen and is_new(have["id"]):
            assert out.new is not None  # made a list above
            out.new.append(i)
        else:
            differing = next((f for f in compared if row.get(f) != have[f]), None)
            if differing is None:
                out.duplicate += 1
            else:
                out.conflicts.append((i, differing, have[differing]))
        seen.add(key)
    return out


def _stored_by_key(conn: Connection, table: sa.Table, key_cols: list[str], compared: tuple[str, ...],
                   rows: Sequence[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """The stored rows (id and compared fields) for the keys of ``rows``, looked up by the key's first
    column (the unique index's prefix), a few hundred at a time."""
    first = table.c[key_cols[0]]
    wanted = sorted({row[key_cols[0]] for row in rows})
    cols = [table.c.id, *(table.c[c] for c in dict.fromkeys([*key_cols, *compared]))]
    out: dict[tuple, dict[str, Any]] = {}
    for i in range(0, len(wanted), 500):
        for r in conn.execute(sa.select(*cols).where(one_of(conn, first, wanted[i:i + 500]))).mappings():
            out[tuple(r[c] for c in key_cols)] = dict(r)
    return out


def one_of(conn: Connection, column: sa.ColumnElement[Any], values: Sequence[str]) -> sa.ColumnElement[bool]:
    """``column IN values`` for text values; on PostgreSQL ``= ANY`` of one array parameter, which its
    generic plan reads through the column's index even when the table's statistics are stale (see
    rollups._in_chunks: one parameter per value made a sequential scan)."""
    if conn.dialect.name == "sqlite":
        return column.in_(values)
    return column == sa.any_(sa.literal(list(values), sa.ARRAY(sa.Text)))  # bound as %(…)s::TEXT[]


def insert_command_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    return _insert_ignoring_duplicates(conn, CMD, rows)


def insert_incidents(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    return _insert_ignoring_duplicates(conn, INC, rows)


def insert_safety_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    return _insert_ignoring_duplicates(conn, SAF, rows)


def insert_eval_coverage(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    return _insert_ignoring_duplicates(conn, EVC, rows)


def _period(col: sa.ColumnElement[Any], start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(col >= start, col < end)


#: the command statuses (engine.domain.COMMAND_STATUSES; storage does not import the engine)
STATUSES: tuple[str, ...] = ("proposed", "approved", "rejected", "succeeded", "failed", "rolled_back")


def _status_counts(row: Sequence[int]) -> dict[str, int]:
    counts = dict(zip(STATUSES, row[:len(STATUSES)], strict=False))
    counts["total"] = row[len(STATUSES)]
    return counts


def _status_columns(conn: Connection, only: sa.ColumnElement[bool] | None = None) -> list[Any]:
    """Per status: rows (``(command_id, status)`` is unique, so rows are distinct commands); then
    ``total`` distinct commands. Conditional aggregates: one scan of the period, no GROUP BY sort."""
    def count(cond: sa.ColumnElement[bool]) -> Any:
        return sa.func.count().filter(cond if only is None else sa.and_(cond, only))
    total = rollups.distinct_ids(conn, CMD.c.command_id)
    return [count(CMD.c.status == s) for s in STATUSES] + [total if only is None else total.filter(only)]


def command_counts(conn: Connection, start: datetime, end: datetime, *, autonomous_only: bool = False,
                   command_type: str | None = None) -> dict[str, int]:
    """Distinct commands per status in [start, end), plus ``total`` distinct commands (from the hourly
    rollups when the period holds a whole hour: storage/rollups.py)."""
    hours = rollups.whole_hours(start, end)
    if hours is not None and not (autonomous_only and command_type is not None):
        if command_type is None:
            got = rollups.counts(conn, start, end, hours, autonomous_only=autonomous_only).get(rollups.ALL)
        else:
            got = rollups.counts(conn, start, end, hours, by_type=True).get(command_type)
        return got or rollups._zero()
    return scan_command_counts(conn, start, end, autonomous_only=autonomous_only, command_type=command_type)


def scan_command_counts(conn: Connection, start: datetime, end: datetime, *, autonomous_only: bool = False,
                        command_type: str | None = None) -> dict[str, int]:
    """``command_counts`` by a scan of the raw events."""
    where = [_period(CMD.c.at, start, end)]
    if autonomous_only:
        where.append(CMD.c.autonomous.is_(True))
    if command_type is not None:
        where.append(CMD.c.command_type == command_type)
    return _status_counts(conn.execute(sa.select(*_status_columns(conn)).where(*where)).one())


def command_counts_split(conn: Connection, start: datetime, end: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """``command_counts`` of all commands and of autonomous ones (metrics, readiness)."""
    hours = rollups.whole_hours(start, end)
    if hours is not None:
        return rollups.split(conn, start, end, hours)
    return scan_command_counts_split(conn, start, end)


def scan_command_counts_split(conn: Connection, start: datetime,
                              end: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """``command_counts_split`` by one scan of the raw events."""
    row = conn.execute(sa.select(*_status_columns(conn), *_status_columns(conn, CMD.c.autonomous.is_(True)))
                       .where(_period(CMD.c.at, start, end))).one()
    return _status_counts(row[:len(STATUSES) + 1]), _status_counts(row[len(STATUSES) + 1:])


def command_counts_by_type(conn: Connection, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """{command_type: {status: distinct commands, 'total': distinct commands}} in [start, end)."""
    hours = rollups.whole_hours(start, end)
    if hours is not None:
        return {t: {k: n for k, n in d.items() if n or k == "total"}
                for t, d in rollups.counts(conn, start, end, hours, by_type=True).items()}
    return scan_command_counts_by_type(conn, start, end)


def scan_command_counts_by_type(conn: Connection, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """``command_counts_by_type`` by a scan of the raw events."""
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


# --- breaker windows: what happened in a window, and what arrived in it late --------------------


@dataclass(frozen=True)
class Window:
    """The rows a circuit breaker judges: those that happened in [start, end) (``end`` is now plus a
    small clock skew), and those judged on arrival (``judged_on_arrival``: stored late but within the
    late horizon, or stamped ahead; decided as they were stored) that arrived in [arrived_from,
    arrived_by] (now). A row that did both counts once; on-time rows and backfilled history are judged
    by their ``at`` alone. ``arrived_from`` is ``start`` unless given (after a resolution: just after it)."""

    start: datetime
    end: datetime
    arrived_by: datetime
    arrived_from: datetime | None = None


def arrived_outside(table: sa.Table, w: Window) -> list[sa.ColumnElement]:
    """The conditions of a window's rows judged on arrival that arrived in it with their ``at`` outside it. The
    arrivals index is partial (migration 0025): it serves them only while the flag's test is spelled
    ``is_(True)``, as its predicate is (tests/integration/test_late_evidence.py checks the plans)."""
    arrived_from = w.start if w.arrived_from is None else w.arrived_from
    return [table.c.judged_on_arrival.is_(True), table.c.ingested_at >= arrived_from,
            table.c.ingested_at <= w.arrived_by, sa.or_(table.c.at < w.start, table.c.at >= w.end)]


def _window_rows(conn: Connection, table: sa.Table, names: Sequence[str], w: Window) -> sa.Subquery:
    """The window's rows as a subquery of columns ``names``. Usually no row judged on arrival arrived in
    the window with its ``at`` outside it — one seek of the arrivals index (partial: only those rows),
    which never reads the table, says so — and the subquery is the rows that happened in it, which the
    database flattens into the query it ran before late evidence was judged. Otherwise it is a UNION
    ALL of the two disjoint parts, so that each row is counted exactly once."""
    cols = [table.c[n] for n in names]
    happened = sa.select(*cols).where(table.c.at >= w.start, table.c.at < w.end)
    arrived_only = arrived_outside(table, w)
    if conn.execute(sa.select(sa.exists().where(*arrived_only))).scalar_one():
        return sa.union_all(happened, sa.select(*cols).where(*arrived_only)).subquery("w")
    return happened.subquery("w")


def window_command_counts(conn: Connection, w: Window, *, autonomous_only: bool = False) -> dict[str, int]:
    """``command_counts`` over a breaker window."""
    # (at, status, command_id) covers the rows that happened: autonomous only read when asked for
    src = _window_rows(conn, CMD, ["command_id", "status", *(["autonomous"] if autonomous_only else [])], w)
    cols: list[Any] = [sa.func.count().filter(src.c.status == s) for s in STATUSES]
    cols.append(rollups.distinct_ids(conn, src.c.command_id))
    stmt = sa.select(*cols)
    if autonomous_only:
        stmt = stmt.where(src.c.autonomous.is_(True))
    return _status_counts(conn.execute(stmt).one())


def window_command_counts_by_type(conn: Connection, w: Window) -> dict[str, dict[str, int]]:
    """``command_counts_by_type`` over a breaker window."""
    src = _window_rows(conn, CMD, ["command_type", "command_id", "status"], w)
    out: dict[str, dict[str, int]] = {}
    for ctype, status, n in conn.execute(sa.select(src.c.command_type, src.c.status, sa.func.count())
                                         .group_by(src.c.command_type, src.c.status)):
        out.setdefault(ctype, {})[status] = n
    for ctype, n in conn.execute(sa.select(src.c.command_type, sa.func.count(sa.distinct(src.c.command_id)))
                                 .group_by(src.c.command_type)):
        out.setdefault(ctype, {})["total"] = n
    return out


#: the outcomes that end a run of consecutive failures (succeeded) or extend it (failed, rolled_back)
FAILURE_STATUSES = ("failed", "rolled_back")


def window_consecutive_failures(conn: Connection, w: Window) -> dict[str, int]:
    """Per command type: its failed and rolled-back events in the window after its last succeeded one
    (all of them when none succeeded in the window). Types without such a failure are left out."""
    src = _window_rows(conn, CMD, ["command_type", "status", "at"], w)
    last_ok = (sa.select(src.c.command_type.label("t"), sa.func.max(src.c.at).label("ok"))
               .where(src.c.status == "succeeded").group_by(src.c.command_type).subquery("ok"))
    stmt = (sa.select(src.c.command_type, sa.func.count())
            .select_from(src.outerjoin(last_ok, last_ok.c.t == src.c.command_type))
            .where(src.c.status.in_(FAILURE_STATUSES), sa.or_(last_ok.c.ok.is_(None), src.c.at > last_ok.c.ok))
            .group_by(src.c.command_type))
    return {t: n for t, n in conn.execute(stmt)}


def outcome_times(conn: Connection, start: datetime, end: datetime) -> list[tuple[str, str, datetime]]:
    """(command_type, status, at) of every succeeded, failed and rolled-back event in [start, end), by at:
    what a backtest of consecutive failures replays."""
    q = (sa.select(CMD.c.command_type, CMD.c.status, CMD.c.at)
         .where(_period(CMD.c.at, start, end), CMD.c.status.in_(("succeeded", *FAILURE_STATUSES)))
         .order_by(CMD.c.at))
    return [(r[0], r[1], r[2]) for r in conn.execute(q)]


def newest_incident_on(conn: Connection, service: str, start: datetime, end: datetime) -> Row | None:
    """The newest incident on ``service`` stamped in [start, end) (a policy's stability check)."""
    return conn.execute(sa.select(INC.c.incident_id, INC.c.severity, INC.c.at)
                        .where(INC.c.service == service, _period(INC.c.at, start, end))
                        .order_by(INC.c.at.desc()).limit(1)).first()


def window_incident_counts(conn: Connection, w: Window) -> dict[str, int]:
    """``incident_counts`` over a breaker window."""
    src = _window_rows(conn, INC, ["severity", "command_id"], w)
    autonomous_cmd = sa.exists().where(CMD.c.command_id == src.c.command_id, CMD.c.autonomous.is_(True))
    row = conn.execute(sa.select(
        sa.func.count(),
        sa.func.count().filter(src.c.severity == "critical"),
        sa.func.count().filter(autonomous_cmd),
        sa.func.count().filter(src.c.severity == "critical", src.c.command_id.is_not(None)),
    )).one()
    return {"total": row[0], "critical": row[1], "fromAutonomousActions": row[2],
            "criticalFromCommands": row[3]}


def window_incident_severities(conn: Connection, w: Window) -> set[str]:
    src = _window_rows(conn, INC, ["severity"], w)
    return set(conn.execute(sa.select(src.c.severity).distinct()).scalars())


def window_safety_counts(conn: Connection, w: Window) -> dict[str, int]:
    src = _window_rows(conn, SAF, ["type"], w)
    return {t: n for t, n in conn.execute(sa.select(src.c.type, sa.func.count()).group_by(src.c.type)).all()}


def latest_eval_coverage(conn: Connection, start: datetime, end: datetime) -> Row[*tuple[Any, ...]] | None:
    return conn.execute(sa.select(EVC.c.covered, EVC.c.total, EVC.c.at)
                        .where(_period(EVC.c.at, start, end))
                        .order_by(EVC.c.at.desc(), EVC.c.id.desc()).limit(1)).first()


def _bucket(conn: Connection, col: sa.ColumnElement[Any], step_seconds: int) -> sa.ColumnElement[int]:
    """The start (epoch seconds) of the step-long bucket holding each row, computed in SQL."""
    if conn.dialect.name == "sqlite":
        return (sa.cast(sa.func.strftime("%s", col), sa.Integer) // step_seconds) * step_seconds
    return sa.cast(sa.func.floor(sa.func.extract("epoch", col) / step_seconds), sa.BigInteger) * step_seconds


def hourly_command_counts(conn: Connection, start: datetime, end: datetime) -> dict[int, dict[str, int]]:
    """{start of the hour (epoch seconds): {status: events, 'total': distinct commands}} of the events in
    [start, end), per hour, over every type and autonomy (hours with none left out): the whole hours from
    the rollups, the parts of hours at the edges from the raw events."""
    hours = rollups.whole_hours(start, end)
    out = {} if hours is None else {h * 3600: c for h, c in rollups.hourly(conn, hours).items()}
    edges = [(start, end)] if hours is None else \
        [(start, rollups.hour_start(hours[0])), (rollups.hour_start(hours[1]), end)]
    for lo, hi in edges:
        if lo < hi:
            for hour, counts in scan_hourly_command_counts(conn, lo, hi).items():
                into = out.setdefault(hour, {})
                for key, n in counts.items():
                    into[key] = into.get(key, 0) + n
    return out


def scan_hourly_command_counts(conn: Connection, start: datetime, end: datetime) -> dict[int, dict[str, int]]:
    """``hourly_command_counts`` by a scan of the raw events."""
    b = _bucket(conn, CMD.c.at, 3600).label("b")
    period = _period(CMD.c.at, start, end)
    out: dict[int, dict[str, int]] = {}
    for h, status, n in conn.execute(sa.select(b, CMD.c.status, sa.func.count()).where(period)
                                     .group_by(b, CMD.c.status)):
        out.setdefault(int(h), {})[status] = int(n)
    for h, n in conn.execute(sa.select(b, rollups.distinct_ids(conn, CMD.c.command_id)).where(period).group_by(b)):
        out.setdefault(int(h), {})["total"] = int(n)
    return out


def incidents_between(conn: Connection, start: datetime, end: datetime) -> Sequence[Row[*tuple[Any, ...]]]:
    """Incidents with whether they name an autonomous command (few rows: incidents are rare)."""
    autonomous_cmd = sa.exists().where(CMD.c.command_id == INC.c.command_id, CMD.c.autonomous.is_(True))
    return conn.execute(sa.select(INC.c.incident_id, INC.c.severity, INC.c.command_id, INC.c.at,
                                  autonomous_cmd.label("autonomous"))
                        .where(_period(INC.c.at, start, end)).order_by(INC.c.at)).all()


def safety_between(conn: Connection, start: datetime, end: datetime) -> Sequence[Row[*tuple[Any, ...]]]:
    return conn.execute(sa.select(SAF.c.type, SAF.c.at).where(_period(SAF.c.at, start, end))
                        .order_by(SAF.c.at)).all()


def count_rows(conn: Connection, tables: Iterable[sa.Table]) -> dict[str, int]:
    return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables}


def human_approved_by_type(conn: Connection, start: datetime, end: datetime) -> dict[str, int]:
    """Distinct commands per type that a human approved (status approved, sent as not autonomous)."""
    rows = conn.execute(sa.select(CMD.c.command_type, sa.func.count())
                        .where(_period(CMD.c.at, start, end), CMD.c.status == "approved",
                               CMD.c.autonomous.is_(False))
                        .group_by(CMD.c.command_type)).all()
    return {t: n for t, n in rows}


def incident_command_types(conn: Connection, start: datetime, end: datetime) -> dict[str, list[str]]:
    """{command type: [incident ids]} for incidents in the period that name a command of that type."""
    rows = conn.execute(sa.select(CMD.c.command_type, INC.c.incident_id)
                        .join(CMD, CMD.c.command_id == INC.c.command_id)
                        .where(_period(INC.c.at, start, end)).distinct()).all()
    out: dict[str, list[str]] = {}
    for ctype, inc in rows:
        out.setdefault(ctype, []).append(inc)
    return out


def autonomous_executions(conn: Connection, command_types: list[str], since: datetime, until: datetime) -> int:
    """Distinct autonomous commands of these types that ran (succeeded, failed or rolled back)."""
    return conn.execute(sa.select(sa.func.count(sa.distinct(CMD.c.command_id)))
                        .where(_period(CMD.c.at, since, until), CMD.c.autonomous.is_(True),
                               CMD.c.command_type.in_(command_types),
                               CMD.c.status.in_(("succeeded", "failed", "rolled_back")))).scalar_one()


def newest_command_event_id(conn: Connection) -> int:
    """The highest row id of command_events (an O(1) look at the primary key's end): it changes when
    events arrive, so a count over them can be reused while it stays the same."""
    return conn.execute(sa.select(sa.func.max(CMD.c.id))).scalar_one() or 0
