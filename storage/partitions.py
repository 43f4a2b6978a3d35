"""Monthly partitions of command_events on PostgreSQL (issue 16): made ahead, dropped by retention.

Migration 0023 makes ``command_events`` a table partitioned by range of ``at``: one partition per month
(``command_events_pYYYY_MM``) and a DEFAULT partition (``command_events_default``) that takes every
month without one (late and far-future stamps), so no event is ever refused for its time. SQLite keeps
one plain table; everything here is a no-op there.

* Idempotency. The primary key is ``(id, at)`` and ``(command_id, status)`` cannot be unique on the
  parent (a unique constraint must hold the partition key): each partition has a unique index on it, a
  net for resends into the same partition. The insert itself leaves out the keys stored already
  (``rollups.InsertTracker.unstored``, under the command_events advisory lock that serialises every
  writer of the table), so a resend stamped in another month stores nothing either.
* Making a month (``ensure_months``: the current and the next ``AHEAD`` months, by the daily retention
  job and the migration). A partition cannot be created for a month the DEFAULT holds rows of, so the
  table is made standalone, those rows are moved into it, and it is attached.
* Retention (``drop_older``): a month wholly before the cut-off is dropped in one short transaction
  instead of deleted row by row. The events a kept incident names are copied back (into the DEFAULT);
  the rollups lose the month's hours and are corrected for the commands with events on both sides of
  it (``_rollup_change``). The boundary month and the DEFAULT keep the batched deletes.
* Locks. Attaching and detaching need strong locks on the parent or the DEFAULT and queue behind long
  readers (a backtest). These transactions take the events advisory lock only, never the store-wide
  write lock (a kill-switch engage never waits for them), set a short ``lock_timeout`` and try again
  a little later when it expires.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from storage import rollups

PARENT = "command_events"
DEFAULT_PARTITION = "command_events_default"
_NAME = re.compile(r"^command_events_p(\d{4})_(\d{2})$")
#: months made ahead of the current one
AHEAD = 2
#: how long a DETACH or ATTACH waits for its lock before it gives way and tries again later
LOCK_TIMEOUT_MS = 200
ATTEMPTS = 25
RETRY_PAUSE = 0.3

Write = Callable[[], AbstractContextManager[Connection]]


def month_of(at: datetime) -> datetime:
    """The first instant (aware UTC) of the month holding ``at``."""
    if at.tzinfo is None:
        raise ValueError("naive datetime given for a partition's month")
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def name_of(month: datetime) -> str:
    return f"command_events_p{month.year:04d}_{month.month:02d}"


def _bound(at: datetime) -> str:
    """A month's bound as the naive UTC timestamp the column stores."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def is_partitioned(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s))",
        (PARENT,)).scalar())


def partitions(conn: Connection) -> dict[str, datetime | None]:
    """{partition name: its month (None for the DEFAULT)} of command_events; {} when not partitioned."""
    if conn.dialect.name != "postgresql":
        return {}
    out: dict[str, datetime | None] = {}
    for name, bound in conn.exec_driver_sql(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)", (PARENT,)):
        m = _NAME.match(name)
        if m:
            out[name] = datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=UTC)
        elif bound == "DEFAULT":
            out[name] = None
    return out


def partition_names(conn: Connection) -> set[str]:
    """Every partition of command_events, by whatever name (autogenerate and table listings skip them)."""
    if conn.dialect.name != "postgresql":
        return set()
    return set(conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s)", (PARENT,)).scalars())


def partition_of_row(conn: Connection, command_id: str, status: str) -> str | None:
    """The partition holding an event (tests and diagnostics)."""
    return conn.exec_driver_sql(
        "SELECT tableoid::regclass::text FROM command_events WHERE command_id = %s AND status = %s",
        (command_id, status)).scalar()


def _lock_timed_out(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        orig = getattr(seen, "orig", None)
        if getattr(orig, "sqlstate", None) == "55P03" or getattr(seen, "sqlstate", None) == "55P03":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retrying(write: Write, work: Callable[[Connection], Any], *, attempts: int = ATTEMPTS,
              pause: float = RETRY_PAUSE, sleep: Callable[[float], None] = time.sleep) -> tuple[bool, Any]:
    """Run ``work`` in a transaction of its own under the events lock, again (from the start, after a
    pause) while a lock it needs times out. (done, what work returned)."""
    for attempt in range(attempts):
        try:
            with write() as conn:
                rollups.lock_events(conn)
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                return True, work(conn)
        except Exception as exc:
            if not _lock_timed_out(exc) or attempt == attempts - 1:
                if _lock_timed_out(exc):
                    return False, None
                raise
        sleep(pause)
    return False, None


# --- making months ------------------------------------------------------------------------------


def make_month(conn: Connection, month: datetime) -> bool:
    """Make the month's partition if it is missing (the caller holds the events lock); the DEFAULT's
    rows of that month move into it. Whether it was made."""
    name = name_of(month)
    if name in partitions(conn):
        return False
    lo, hi = _bound(month), _bound(next_month(month))
    ex = conn.exec_driver_sql
    ex(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)")
    # ATTACH then need not scan the new table to know its rows belong to the month
    ex(f"ALTER TABLE {name} ADD CONSTRAINT {name}_month CHECK (at >= '{lo}' AND at < '{hi}')")
    if DEFAULT_PARTITION in partitions(conn):
        ex(f"WITH gone AS (DELETE FROM {DEFAULT_PARTITION} WHERE at >= %s AND at < %s RETURNING *) "
           f"INSERT INTO {name} SELECT * FROM gone", (lo, hi))
    ex(f"CREATE UNIQUE INDEX uq_{name} ON {name} (command_id, status)")
    ex(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')")
    ex(f"ALTER TABLE {name} DROP CONSTRAINT {name}_month")
    return True


def ensure_months(write: Write, now: datetime, *, ahead: int = AHEAD, attempts: int = ATTEMPTS,
                  sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Make the partitions of the current month and the next ``ahead`` ones, each in a transaction of
    its own; returns the names made (a month whose locks stayed busy is left for the next run: its
    events wait in the DEFAULT meanwhile)."""
    with write() as conn:
        if not is_partitioned(conn):  # SQLite, or a store not migrated yet
            return []
    made = []
    month = month_of(now)
    for _ in range(ahead + 1):
        def work(conn: Connection, month: datetime = month) -> bool:
            return make_month(conn, month)
        done, did = _retrying(write, work, attempts=attempts, sleep=sleep)
        if done and did:
            made.append(name_of(month))
        month = next_month(month)
    return made


# --- dropping months ----------------------------------------------------------------------------


def droppable(conn: Connection, before: datetime) -> list[tuple[str, datetime]]:
    """(name, month) of the partitions wholly older than ``before``, oldest first."""
    return sorted(((n, m) for n, m in partitions(conn).items() if m is not None and next_month(m) <= before),
                  key=lambda p: p[1])


def _hours(month: datetime) -> tuple[int, int]:
    return rollups.hour_of(month), rollups.hour_of(next_month(month))


def _rollup_change(conn: Connection, name: str, month: datetime, kept: set[str]) -> dict[tuple, int]:
    """What the rollups gain (applied after their rows of the month's hours are deleted) when the
    partition goes and the events of ``kept`` commands stay.

    Only events in the month contribute to rows of its hours, and the commands wholly inside it
    contribute to no other row. So deleting those rows is exact for them, and only the commands with
    events on both sides of the month (found through the rollups' own chain steps that cross its
    bounds, then read) or named by a kept incident need reading: their rows outside the month change by
    after - before, and their kept events' rows inside it are added again."""
    ha, hb = _hours(month)
    crossing = conn.exec_driver_sql(
        "SELECT DISTINCT prev_hour FROM command_rollups WHERE command_type = '' AND autonomous = -1 "
        "AND status = '*' AND n > 0 AND hour >= %(hb)s AND prev_hour >= %(ha)s AND prev_hour < %(hb)s "
        "UNION SELECT DISTINCT hour FROM command_rollups WHERE command_type = '' AND autonomous = -1 "
        "AND status = '*' AND n > 0 AND hour >= %(ha)s AND hour < %(hb)s AND prev_hour >= 0 "
        "AND prev_hour < %(ha)s", {"ha": ha, "hb": hb}).scalars().all()
    both: set[str] = set()
    lo, hi = _bound(month), _bound(next_month(month))
    outside = ("EXISTS (SELECT 1 FROM command_events o WHERE o.command_id = p.command_id "
               "AND (o.at < %s OR o.at >= %s))")
    for i in range(0, len(crossing), 200):
        part = crossing[i:i + 200]
        ranges = " OR ".join(["(p.at >= %s AND p.at < %s)"] * len(part))
        args: list[Any] = []
        for h in part:
            args += [_bound(rollups.hour_start(h)), _bound(rollups.hour_start(h + 1))]
        both.update(conn.exec_driver_sql(
            f"SELECT DISTINCT p.command_id FROM {name} p WHERE ({ranges}) AND {outside}",
            (*args, lo, hi)).scalars())
    touched = sorted(both | kept)
    stored = rollups._stored_events(conn, touched) if touched else {}
    change: dict[tuple, int] = {}
    inside: dict[tuple, int] = {}
    for cid, events in stored.items():
        after = events if cid in kept else [e for e in events if not ha <= e[1] < hb]
        rollups._contributions(change, events, -1)
        rollups._contributions(change, after, +1)
        rollups._contributions(inside, after, +1)
    out = {k: n for k, n in change.items() if not ha <= k[1] < hb}
    out.update((k, n) for k, n in inside.items() if ha <= k[1] < hb)
    return out


def drop_month(conn: Connection, name: str, month: datetime, before: datetime) -> dict[str, Any]:
    """Drop one month's partition (the caller holds the events lock, with a short lock_timeout): its
    events named by an incident at or after ``before`` are copied back first (they land in the
    DEFAULT), the rollups follow. {partition, rows dropped, rows kept}."""
    ex = conn.exec_driver_sql
    rows = ex(f"SELECT count(*) FROM {name}").scalar_one()
    kept = set(ex(f"SELECT DISTINCT i.command_id FROM incidents i WHERE i.at >= %s AND i.command_id IS NOT NULL "
                  f"AND EXISTS (SELECT 1 FROM {name} p WHERE p.command_id = i.command_id)",
                  (before.astimezone(UTC).replace(tzinfo=None),)).scalars())
    change = _rollup_change(conn, name, month, kept)
    ha, hb = _hours(month)
    # the strong lock last, so that readers wait for it only for the few statements to the commit
    ex(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")
    ex("DELETE FROM command_rollups WHERE hour >= %s AND hour < %s", (ha, hb))
    rollups._apply(conn, change)
    kept_rows = 0
    if kept:
        kept_rows = ex(f"INSERT INTO {PARENT} SELECT * FROM {name} WHERE command_id = ANY(%s)",
                       (sorted(kept),)).rowcount
    ex(f"DROP TABLE {name}")
    rollups.drop_empty(conn)
    return {"partition": name, "rows": rows - kept_rows, "kept": kept_rows}


def drop_older(write: Write, before: datetime, *, attempts: int = ATTEMPTS,
               sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """Drop every month's partition wholly older than ``before``, each in a transaction of its own
    (events lock only, short lock_timeout, tried again while readers hold the table). What was dropped;
    a partition whose lock stayed busy is left to the batched deletes."""
    with write() as conn:
        if not is_partitioned(conn):
            return []
        months = droppable(conn, before)
    out = []
    for name, month in months:
        def work(conn: Connection, name: str = name, month: datetime = month) -> dict[str, Any] | None:
            if name not in partitions(conn):  # dropped meanwhile by another prune
                return None
            return drop_month(conn, name, month, before)
        done, got = _retrying(write, work, attempts=attempts, sleep=sleep)
        if done and got is not None:
            out.append(got)
    return out
