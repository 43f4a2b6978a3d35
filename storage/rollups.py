"""Hourly rollups of command events: window counts that cost the hours in the window, not its events.

The table ``command_rollups`` (storage/models.py ``CommandRollup``) is kept in the same transaction as
every insert into and delete from ``command_events`` (events_repo's inserts, maintenance's prune), so it
always says exactly what a scan of the raw events says:

* per-status event counts per hour, per command type and autonomy and over all types (``command_type``
  ``ALL``). ``(command_id, status)`` is unique, so events of a status are distinct commands of it.
* distinct commands. A command counts in a window when any of its events lies in it; the event that
  makes it count is its first in the window: the one whose previous event (in the order (at, status))
  lies before the window's start, or that has none. So each event is counted at its hour under the hour
  of the previous event of its command (``prev_hour``; -1 for none), within a group: over all events
  (``ALL``, ``ANY``), per autonomy (``ALL``, 0/1: the chain of a command's autonomous events), per type
  (type, ``ANY``). Distinct commands in the whole hours [ha, hb) = the events counted there under a
  ``prev_hour`` < ha. Ties in ``at`` change which event is counted, never the counts.

Windows that do not start or end on the hour are exact too: the whole hours come from the rollups and
the partial hours at the edges from the raw events (see ``_edge_totals``).

Inserting an event can change the previous event of a later one (out-of-order arrival); deleting one
(prune) the previous event of the next. Both are handled alike: for each command touched, the
contributions of its events before the change are taken away and those after it added
(``_contributions``), reading the command's few stored events by the unique (command_id, status) index.
On PostgreSQL, where ingest does not take the store-wide write lock, a transaction-level advisory lock
of its own serialises the writers of command_events, so that what is read is what is changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.sql.functions import FunctionElement

from storage.tables import command_events as CMD
from storage.tables import command_rollups as R

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
#: command_type of rows over all types (a stored type is never empty: engine/events.py refuses it)
ALL = ""
#: autonomous of rows over both autonomies
ANY = -1
#: status of the distinct-command rows
CHAIN = "*"
#: prev_hour of a command's first event in its group, and of the per-status rows
NO_PREV = -1

STATUSES: tuple[str, ...] = ("proposed", "approved", "rejected", "succeeded", "failed", "rolled_back")

#: advisory lock key serialising the writers of command_events on PostgreSQL ("rollups" in ASCII)
_EVENTS_LOCK_SQL = sa.text("SELECT pg_advisory_xact_lock(CAST(:k AS bigint) # hashtext(current_schema()))")
_EVENTS_LOCK_KEY = 0x726F6C6C757073


_EPOCH_ORDINAL = EPOCH.toordinal()


def hour_of(at: datetime) -> int:
    """The hour's number since the epoch (exact integer arithmetic, whatever the microseconds)."""
    if at.utcoffset():
        at = at.astimezone(UTC)
    return (at.toordinal() - _EPOCH_ORDINAL) * 24 + at.hour


def hour_start(hour: int) -> datetime:
    return EPOCH + hour * HOUR


def whole_hours(start: datetime, end: datetime) -> tuple[int, int] | None:
    """(ha, hb): the whole hours [ha, hb) inside [start, end), or None when there is not one."""
    ha = hour_of(start)
    if hour_start(ha) < start:
        ha += 1
    hb = hour_of(end)
    return (ha, hb) if hb > ha else None


def lock_events(conn: Connection) -> None:
    """Serialise this transaction's changes to command_events and their rollups (PostgreSQL; SQLite's
    writer holds the store's only write lock already)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_EVENTS_LOCK_SQL, {"k": _EVENTS_LOCK_KEY})


# --- maintenance ------------------------------------------------------------------------------------

#: (status, hour, command_type, autonomous 0/1) of one event of a command: all that its rollup rows need
#: (hours grow with ``at``, so a group's events in the order (at, status) have its hours in sorted order)
Event = tuple[str, int, str, int]


def _contributions(out: dict[tuple, int], events: Iterable[Event], sign: int) -> None:
    """Add (sign +1) or take away (-1) the rollup rows that one command's events make (any mix of types
    and autonomies: each group's chain apart)."""
    get = out.get
    chains: dict[tuple[str, int], list[int]] = {}
    for status, h, ctype, a in events:
        for key in ((ctype, h, a, status, NO_PREV), (ALL, h, a, status, NO_PREV)):
            out[key] = get(key, 0) + sign
        for group in ((ALL, ANY), (ALL, a), (ctype, ANY)):
            chains.setdefault(group, []).append(h)
    for (gt, ga), hours in chains.items():
        prev = NO_PREV
        for h in sorted(hours):
            key = (gt, h, ga, CHAIN, prev)
            out[key] = get(key, 0) + sign
            prev = h


def _add_commands(out: dict[tuple, int], commands: Iterable[Sequence[Event]], sign: int) -> None:
    """``_contributions`` of many commands' whole event lists, the common case cheaply: a command whose
    events share one type and autonomy (all three of its chains are then one) costs two counter keys
    per event, its (type, hour, autonomy, status) and its chain step (type, hour, autonomy, previous
    hour); the five kinds of rollup rows are folded from those counters once per key."""
    status_n: dict[tuple, int] = {}
    chain_n: dict[tuple, int] = {}
    sget, cget = status_n.get, chain_n.get
    for evs in commands:
        if len(evs) == 1:
            s, h, t, a = evs[0]
            k = (t, h, a, s)
            status_n[k] = sget(k, 0) + 1
            ck = (t, h, a, NO_PREV)
            chain_n[ck] = cget(ck, 0) + 1
            continue
        t, a = evs[0][2], evs[0][3]
        if any(e[2] != t or e[3] != a for e in evs):
            _contributions(out, evs, sign)
            continue
        prev = NO_PREV
        for h in sorted([e[1] for e in evs]):
            ck = (t, h, a, prev)
            chain_n[ck] = cget(ck, 0) + 1
            prev = h
        for s, h, _, _ in evs:
            k = (t, h, a, s)
            status_n[k] = sget(k, 0) + 1
    _fold(out, status_n, chain_n, sign)


def _apply(conn: Connection, delta: dict[tuple, int]) -> None:
    rows = [(*k, n) for k, n in delta.items() if n]
    if not rows:
        return
    sqlite = conn.dialect.name == "sqlite"
    if not sqlite:
        rows.sort()  # one lock order for concurrent writers on PostgreSQL (SQLite has one writer)
    marks = "?" if sqlite else "%s"
    conn.exec_driver_sql(_UPSERT.replace("?", marks), rows)  # the driver's executemany: no per-row binding


_UPSERT = (
    "INSERT INTO command_rollups (command_type, hour, autonomous, status, prev_hour, n) "
    "VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (command_type, hour, autonomous, status, prev_hour) "
    "DO UPDATE SET n = command_rollups.n + excluded.n")


def _in_chunks(conn: Connection, sql: str, values: Sequence[Any],
               size: int | None = None) -> Iterator[CursorResult[*tuple[Any, ...]]]:
    """Run ``sql`` (with one ``{}`` where a membership test of text ``values`` goes, e.g. ``WHERE
    command_id {}``) through the driver, ``size`` values at a time (by default 500 on SQLite, one
    parameter each, and 10,000 on PostgreSQL); yields each chunk's cursor result.

    On PostgreSQL the values are one array parameter (``= ANY(%s::text[])``). With one
    parameter per value, the server's generic plan for a table whose statistics are stale (a fresh store
    being filled, before autovacuum's analyze) was a sequential scan comparing every row with every
    parameter: an ingest batch's lookup took 10 s at 20,000 stored events and grew with them. Given the
    array, the plan reads the unique index whatever the statistics say (tests/integration/test_rollups.py).
    """
    if conn.dialect.name != "sqlite":
        size = size or 10_000
        for i in range(0, len(values), size):
            yield conn.exec_driver_sql(sql.format("= ANY(%s::text[])"), (list(values[i:i + size]),))
        return
    size = size or 500
    for i in range(0, len(values), size):
        part = tuple(values[i:i + size])
        yield conn.exec_driver_sql(sql.format(f"IN ({', '.join(['?'] * len(part))})"), part)


def _stored_events(conn: Connection, command_ids: Sequence[str], *,
                   with_ids: bool = False) -> dict[str, list]:
    """{command_id: [(status, hour, command_type, autonomous 0/1[, id])]} of the stored events of these
    commands, read through the driver by the unique (command_id, status) index, the hour computed by the
    database (no typed result per row)."""
    h = _hour_sql(conn.dialect.name)
    sql = (f"SELECT command_id, status, {h}, command_type, autonomous{', id' if with_ids else ''} "
           "FROM command_events WHERE command_id {}")
    out: dict[str, list] = {}
    for result in _in_chunks(conn, sql, command_ids):
        for r in result:
            out.setdefault(r[0], []).append((r[1], r[2], r[3], 1 if r[4] else 0, *r[5:]))
    return out


class InsertTracker:
    """Around an insert of command rows: the constructor reads what the batch's commands had stored,
    ``after(stored)`` updates the rollups with what the insert added (``stored``: how many rows it
    stored, a check; on a mismatch the commands are read again). Commands with nothing stored before
    (the common case) cost ``_add_commands``; one with stored events is taken away and added again."""

    def __init__(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        self.conn = conn
        self.rows = rows
        lock_events(conn)
        self.ids = list(dict.fromkeys([r["command_id"] for r in rows]))
        self.old = _stored_events(conn, self.ids)

    def unstored(self) -> list[dict[str, Any]]:
        """The batch's rows whose (command_id, status) is neither stored already nor repeated earlier in
        the batch: what a PostgreSQL insert into the partitioned table may store. There the key cannot be
        unique over all months (storage/partitions.py), so this read, taken under the events lock that
        every writer of command_events takes, is what keeps a resend stamped in another month out."""
        seen = {(c, e[0]) for c, evs in self.old.items() for e in evs}
        out = []
        for r in self.rows:
            key = (r["command_id"], r["status"])
            if key not in seen:
                seen.add(key)
                out.append(r)
        return out

    def after(self, stored: int) -> None:
        if stored == len(self.rows):  # every row stored: no key repeated or stored before
            delta: dict[tuple, int] = {}
            rows = self.rows
            if self.old:  # commands continued from earlier batches: taken away whole and added again
                rows = [r for r in self.rows if r["command_id"] not in self.old]
                more: dict[str, list[Event]] = {}
                for r in self.rows:
                    if r["command_id"] in self.old:
                        more.setdefault(r["command_id"], []).append(
                            (r["status"], hour_of(r["at"]), r["command_type"], 1 if r["autonomous"] else 0))
                for c, evs in more.items():
                    had = self.old[c]
                    _contributions(delta, had, -1)
                    _contributions(delta, had + evs, +1)
            if rows:
                _add_rows(delta, rows)
            _apply(self.conn, delta)
            return
        old = self.old
        seen = {(c, e[0]) for c, evs in old.items() for e in evs}
        new: dict[str, list[Event]] = {}
        count = 0
        for r in self.rows:
            cid = r["command_id"]
            status = r["status"]
            key = (cid, status)
            if key in seen:
                continue
            seen.add(key)
            count += 1
            at = r["at"]
            if at.tzinfo is not UTC:
                at = at.astimezone(UTC)
            ev = (status, (at.toordinal() - _EPOCH_ORDINAL) * 24 + at.hour, r["command_type"],
                  1 if r["autonomous"] else 0)
            got = new.get(cid)
            if got is None:
                new[cid] = [ev]
            else:
                got.append(ev)
        if count != stored:  # not what the database did (it cannot be, but then be exact anyway)
            now = _stored_events(self.conn, self.ids)
            new = {c: [e for e in evs if e not in set(old.get(c, ()))] for c, evs in now.items()}
            new = {c: evs for c, evs in new.items() if evs}
        delta = {}
        if old:
            for c in [c for c in new if c in old]:
                had = old[c]
                _contributions(delta, had, -1)
                _contributions(delta, had + new.pop(c), +1)
        _add_commands(delta, new.values(), +1)
        _apply(self.conn, delta)


def _add_rows(out: dict[tuple, int], rows: Sequence[dict[str, Any]]) -> None:
    """``_add_commands`` of a batch of new rows (unique keys, commands with nothing stored before), a
    column at a time: the counting in Counter's C loop, one sort of (command, hour) for the chains and
    one Python step per event for the previous hour."""
    ats = [r["at"] for r in rows]
    if any(at.tzinfo is not UTC for at in ats):
        ats = [at.astimezone(UTC) for at in ats]
    hours = [(at.toordinal() - _EPOCH_ORDINAL) * 24 + at.hour for at in ats]
    cids = [r["command_id"] for r in rows]
    types = [r["command_type"] for r in rows]
    autos = [1 if r["autonomous"] else 0 for r in rows]
    statuses = [r["status"] for r in rows]
    type_of = dict(zip(cids, types, strict=True))
    auto_of = dict(zip(cids, autos, strict=True))
    mixed = {c for c, t in zip(cids, types, strict=True) if type_of[c] != t}
    mixed.update(c for c, a in zip(cids, autos, strict=True) if auto_of[c] != a)
    # (command_id, hour, command_type, autonomous 0/1, status) of each row
    events: Iterable[tuple[str, int, str, int, str]] = zip(cids, hours, types, autos, statuses, strict=True)
    if mixed:  # a command of several types or autonomies: each group's chain apart
        events = list(events)
        apart: dict[str, list[Event]] = {}
        for c, h, t, a, s in events:
            if c in mixed:
                apart.setdefault(c, []).append((s, h, t, a))
        for evs in apart.values():
            _contributions(out, evs, +1)
        events = [e for e in events if e[0] not in mixed]
    chain: list[tuple] = []
    step = chain.append
    last_c, last_h = None, NO_PREV
    for c, h, t, a, _ in sorted(events):
        step((t, h, a, last_h if c == last_c else NO_PREV))
        last_c, last_h = c, h
    status_n = Counter((t, h, a, s) for _, h, t, a, s in events) if mixed else \
        Counter(zip(types, hours, autos, statuses, strict=True))
    _fold(out, status_n, Counter(chain), +1)


def _fold(out: dict[tuple, int], status_n: dict[tuple, int], chain_n: dict[tuple, int], sign: int) -> None:
    """The five kinds of rollup rows from per-(type, hour, autonomy, status) event counts and
    per-(type, hour, autonomy, previous hour) chain steps of commands of one type and autonomy."""
    get = out.get
    for (t, h, a, s), n in status_n.items():
        for k in ((t, h, a, s, NO_PREV), (ALL, h, a, s, NO_PREV)):
            out[k] = get(k, 0) + sign * n
    for (t, h, a, p), n in chain_n.items():
        for k in ((ALL, h, ANY, CHAIN, p), (ALL, h, a, CHAIN, p), (t, h, ANY, CHAIN, p)):
            out[k] = get(k, 0) + sign * n


def delete_where(conn: Connection, cond: Any, limit: int | None = None, *, outer: Any = None) -> int:
    """Delete the command_events rows matching ``cond`` (at most ``limit`` of them) and take them out
    of the rollups, in the caller's transaction; returns the rows deleted. One DELETE … RETURNING says
    what went; then one read by the unique (command_id, status) index of what those commands keep.
    ``outer``: a condition the DELETE itself repeats (on PostgreSQL the time bound, so that the
    ``id IN (…)`` probes only the partitions that can hold such rows)."""
    lock_events(conn)
    which = sa.select(CMD.c.id).where(cond)
    if limit is not None:
        which = which.limit(limit)
    hour = sa.literal_column(_hour_sql(conn.dialect.name), sa.Integer)
    where = [CMD.c.id.in_(which.scalar_subquery())]
    if outer is not None:
        where.append(outer)
    gone = conn.execute(sa.delete(CMD).where(*where)
                        .returning(CMD.c.command_id, CMD.c.status, hour, CMD.c.command_type, CMD.c.autonomous)
                        ).all()
    forget(conn, gone)
    return len(gone)


def forget(conn: Connection, gone: Sequence[Sequence[Any]]) -> None:
    """Take rows just deleted from command_events ((command_id, status, hour, command_type, autonomous)
    of each) out of the rollups: a command that kept none of its events costs ``_add_commands``; one
    that kept some is taken away whole and its kept events added again."""
    if not gone:
        return
    going: dict[str, list[Event]] = {}
    for cid, status, h, ctype, autonomous in gone:
        ev = (status, h, ctype, 1 if autonomous else 0)
        got = going.get(cid)
        if got is None:
            going[cid] = [ev]
        else:
            got.append(ev)
    delta: dict[tuple, int] = {}
    for c, kept in _stored_events(conn, list(going)).items():
        _contributions(delta, kept + going.pop(c), -1)
        _contributions(delta, kept, +1)
    _add_commands(delta, going.values(), -1)
    _apply(conn, delta)


def drop_empty(conn: Connection) -> int:
    """Remove rows whose count went back to zero (after a prune)."""
    return conn.execute(sa.delete(R).where(R.c.n == 0)).rowcount


def _hour_sql(dialect: str, col: str = "at") -> str:
    if dialect == "sqlite":
        return f"(CAST(strftime('%s', {col}) AS INTEGER) / 3600)"
    return f"CAST(floor(extract(epoch from {col}) / 3600) AS bigint)"


def rebuild_sql(dialect: str) -> list[str]:
    """The statements that rebuild command_rollups from command_events (backfill and migration 0020):
    set-based, the chains by a window function over each command's events."""
    h = _hour_sql(dialect)
    order = "at, status" if dialect == "sqlite" else 'at, status COLLATE "C"'
    auto = "CASE WHEN autonomous THEN 1 ELSE 0 END"
    ev = (f"SELECT command_id, command_type, status, at, {h} AS h, {auto} AS a FROM command_events")
    chains = (
        f"SELECT h, command_type, a, "
        f"COALESCE(LAG(h) OVER (PARTITION BY command_id ORDER BY {order}), -1) AS p_all, "
        f"COALESCE(LAG(h) OVER (PARTITION BY command_id, a ORDER BY {order}), -1) AS p_auto, "
        f"COALESCE(LAG(h) OVER (PARTITION BY command_id, command_type ORDER BY {order}), -1) AS p_type "
        f"FROM ({ev}) ev")
    ins = "INSERT INTO command_rollups (command_type, hour, autonomous, status, prev_hour, n) "
    return [
        "DELETE FROM command_rollups",
        ins + f"SELECT command_type, h, a, status, -1, count(*) FROM ({ev}) ev GROUP BY command_type, h, a, status",
        ins + f"SELECT '', h, a, status, -1, count(*) FROM ({ev}) ev GROUP BY h, a, status",
        ins + f"SELECT '', h, -1, '*', p_all, count(*) FROM ({chains}) c GROUP BY h, p_all",
        ins + f"SELECT '', h, a, '*', p_auto, count(*) FROM ({chains}) c GROUP BY h, a, p_auto",
        ins + f"SELECT command_type, h, -1, '*', p_type, count(*) FROM ({chains}) c GROUP BY command_type, h, p_type",
    ]


def rebuild(conn: Connection) -> None:
    """Build the rollups from the raw events, in the caller's transaction."""
    lock_events(conn)
    for sql in rebuild_sql(conn.dialect.name):
        conn.exec_driver_sql(sql)


# --- answers ----------------------------------------------------------------------------------------


def distinct_ids(conn: Connection, col: sa.ColumnElement[Any]) -> FunctionElement[int]:
    """``count(DISTINCT col)``; on PostgreSQL bytewise (COLLATE "C"): the same distinct values under any
    deterministic collation, without sorting by the locale's rules."""
    if conn.dialect.name == "postgresql":
        col = col.collate("C")
    return sa.func.count(sa.distinct(col))


def counts(conn: Connection, start: datetime, end: datetime, hours: tuple[int, int], *,
           by_type: bool = False, autonomous_only: bool = False) -> dict[str, dict[str, int]]:
    """{command_type (ALL unless by_type): {status: distinct commands, 'total': distinct commands}} in
    [start, end), whose whole hours are ``hours`` (``whole_hours``): rollups for the whole hours, raw
    events for the partial hours at the edges."""
    ha, hb = hours
    out: dict[str, dict[str, int]] = {}

    def add(ctype: str, key: str, n: int) -> None:
        d = out.setdefault(ctype, {})
        d[key] = d.get(key, 0) + int(n)

    in_hours = [R.c.hour >= ha, R.c.hour < hb]
    # the primary key leads with the type: seek each type's hours (a `!= ''` would read every hour)
    types = R.c.command_type.in_(_types(conn)) if by_type else R.c.command_type == ALL
    # per status, whole hours
    where = [types, *in_hours, R.c.status != CHAIN]
    if autonomous_only:
        where.append(R.c.autonomous == 1)
    for ctype, status, n in conn.execute(sa.select(R.c.command_type, R.c.status, sa.func.sum(R.c.n))
                                         .where(*where).group_by(R.c.command_type, R.c.status)):
        add(ctype, status, n)
    # distinct commands, whole hours: events whose previous one is before ha (or that have none)
    where = [types, *in_hours, R.c.status == CHAIN, R.c.prev_hour < ha,
             R.c.autonomous == (1 if autonomous_only else ANY)]
    for ctype, n in conn.execute(sa.select(R.c.command_type, sa.func.sum(R.c.n)).where(*where)
                                 .group_by(R.c.command_type)):
        add(ctype, "total", n)
    _edges(conn, add, start, end, hour_start(ha), hour_start(hb), by_type=by_type,
           autonomous_only=autonomous_only)
    for d in out.values():
        for s in STATUSES:
            d.setdefault(s, 0)
        d.setdefault("total", 0)
    return {t: d for t, d in out.items() if not by_type or any(d.values())}


def _types(conn: Connection) -> list[str]:
    """The command types in the rollups, one index seek each."""
    out: list[str] = []
    last = ALL
    while (t := conn.execute(sa.select(sa.func.min(R.c.command_type)).where(R.c.command_type > last))
           .scalar()) is not None:
        out.append(t)
        last = t
    return out


def _edges(conn: Connection, add: Callable[[str, str, int], None], start: datetime, end: datetime, a: datetime,
           b: datetime, *, by_type: bool, autonomous_only: bool) -> None:
    """The partial hours [start, a) and [b, end): their per-status counts, and the distinct commands
    whose first event in [start, end) lies in them, minus those the whole hours counted although their
    first event in the window lies in the leading edge:

        lead  [start, a):  + commands with an event here                      (first in the window here)
                           - those of them with an event in [a, b)            (the rollups counted them)
        trail [b, end):    + commands with an event here and none in [start, b)
    """
    g = CMD.alias("g")
    same = [g.c.command_id == CMD.c.command_id]
    filt = []
    if by_type:  # `|| ''`: the look-up goes by the command's id (a few rows), never by the type's index
        same.append(g.c.command_type.op("||")(sa.literal_column("''")) == CMD.c.command_type)
    if autonomous_only:
        same.append(g.c.autonomous.is_(True))
        filt.append(CMD.c.autonomous.is_(True))
    ctype = CMD.c.command_type if by_type else sa.literal(ALL)
    group = [CMD.c.command_type] if by_type else []
    for lo, hi, seen_from, seen_to, sign in ((start, a, a, b, -1), (b, end, start, b, -1)):
        if lo >= hi:
            continue
        period = [CMD.c.at >= lo, CMD.c.at < hi, *filt]
        for t, status, n in conn.execute(sa.select(ctype, CMD.c.status, sa.func.count()).where(*period)
                                         .group_by(*group, CMD.c.status)):
            add(t, status, n)
        elsewhere = sa.exists().where(*same, g.c.at >= seen_from, g.c.at < seen_to)
        ids = distinct_ids(conn, CMD.c.command_id)
        for t, n_all, n_else in conn.execute(sa.select(ctype, ids, ids.filter(elsewhere)).where(*period)
                                             .group_by(*group)):
            add(t, "total", n_all + sign * n_else)


def hourly(conn: Connection, hours: tuple[int, int]) -> dict[int, dict[str, int]]:
    """{hour: {status: events, 'total': distinct commands with an event in the hour}} for the whole hours
    [ha, hb), over every type and autonomy: a command's first event in an hour is the one whose previous
    event (over all its events) lies in an earlier hour."""
    ha, hb = hours
    out: dict[int, dict[str, int]] = {}
    in_hours = [R.c.command_type == ALL, R.c.hour >= ha, R.c.hour < hb]
    for h, status, n in conn.execute(sa.select(R.c.hour, R.c.status, sa.func.sum(R.c.n))
                                     .where(*in_hours, R.c.status != CHAIN).group_by(R.c.hour, R.c.status)):
        if n:
            out.setdefault(int(h), {})[status] = int(n)
    for h, n in conn.execute(sa.select(R.c.hour, sa.func.sum(R.c.n))
                             .where(*in_hours, R.c.autonomous == ANY, R.c.status == CHAIN,
                                    R.c.prev_hour < R.c.hour).group_by(R.c.hour)):
        if n:
            out.setdefault(int(h), {})["total"] = int(n)
    return out


def split(conn: Connection, start: datetime, end: datetime,
          hours: tuple[int, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(all commands, autonomous commands): per status and total, as events_repo.command_counts_split."""
    every = counts(conn, start, end, hours).get(ALL) or _zero()
    auto = counts(conn, start, end, hours, autonomous_only=True).get(ALL) or _zero()
    return every, auto


def _zero() -> dict[str, int]:
    return {**dict.fromkeys(STATUSES, 0), "total": 0}
