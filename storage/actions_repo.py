"""Grants, action requests and the gate's decision log: the rows behind governed actions."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage import audit, rollups
from storage.db import GENERIC_PLANS
from storage.tables import action_requests as REQ
from storage.tables import agents as AG
from storage.tables import audit_log as AUDIT
from storage.tables import command_events as CMD
from storage.tables import gate_decisions as DEC
from storage.tables import governance_state as STATE
from storage.tables import grants as GR
from storage.tables import half_open as HALF_OPEN

#: a grant in flight, the outcomes of a run, an undecided request: the values of engine/domain.py's
#: ``GrantStatus`` and ``RequestStatus`` (storage may not import the engine, .importlinter's layers; a unit test
#: holds them equal)
OPEN = "granted"
EXECUTED: tuple[str, ...] = ("succeeded", "failed", "rolled_back")
PENDING = "pending"


def _one_of(column: sa.Column, values: Sequence[str]) -> sa.ColumnElement:
    """``column IN (...)`` with the values bound in the statement (no expanding parameter: a prebuilt
    statement then costs no post-compilation per execution)."""
    return column.in_([sa.bindparam(None, v, type_=column.type, unique=True) for v in values])


def _scope(table: sa.Table, types: Sequence[str], service: str | None) -> list:
    where = [_one_of(table.c.command_type, types)]
    if service is not None:
        where.append(table.c.service == service)
    return where


# --- grants -----------------------------------------------------------------------------------


_INSERT_GRANT = sa.insert(GR)
_INSERT_DECISION = sa.insert(DEC)
_NEWEST_COMMAND_EVENT = sa.select(sa.func.max(CMD.c.id))
_GRANT_ID = sa.select(GR.c.id).where(GR.c.id == sa.bindparam("id"))


def insert_grant(conn: Connection, **row: Any) -> None:
    """A grant row without its audit entry (tests, imports): the gate's kept grant times (engine/policies.py,
    checked against the audit head, which this does not move) are forgotten in this process."""
    conn.execute(_INSERT_GRANT, row)  # a prebuilt statement with the row as parameters: no .values() per call
    global RAW_GRANT_WRITES
    RAW_GRANT_WRITES += 1


#: grants written in this process without moving the audit head (``insert_grant``): kept grant times made
#: before such a write are dropped (engine/policies.py ``_GrantTimes``)
RAW_GRANT_WRITES = 0
#: ``Connection.info`` key: the audit head hash ``write_grant`` set in this transaction (the governance state's
#: ``audit_head_hash`` once it commits)
HEAD_WRITTEN = "govcon_gate_head_written"


#: the columns the gate writes for a grant and its decision row (``write_grant``)
GRANT_COLUMNS = ("id", "command_type", "service", "agent", "confidence", "action_class", "policy", "granted_at",
                 "expires_at", "status", "request_id", "approved_by", "requested_by")
DECISION_COLUMNS = ("at", "command_type", "service", "agent", "confidence", "action_class", "decision", "reason",
                    "policy", "grant_id", "request_id")


@functools.lru_cache(maxsize=1)
def _grant_write_stmt() -> sa.Update:
    """PostgreSQL: the grant, its decision row, its audit entry and the state's audit head in one statement
    (three data-modifying CTEs and the head's UPDATE): one round trip instead of four."""
    def values(table: sa.Table, prefix: str, columns: Sequence[str]) -> dict[str, Any]:
        return {c: sa.bindparam(prefix + c, type_=table.c[c].type) for c in columns}
    grant = sa.insert(GR).values(values(GR, "g_", GRANT_COLUMNS)).cte("grant_row")
    decision = sa.insert(DEC).values(values(DEC, "d_", DECISION_COLUMNS)).cte("decision_row")
    entry = sa.insert(AUDIT).values(values(AUDIT, "a_", audit.ENTRY_COLUMNS)).cte("audit_entry")
    return (sa.update(STATE).where(STATE.c.id == 1)
            .values(audit_head_seq=sa.bindparam("head_seq"), audit_head_hash=sa.bindparam("head_hash"))
            .add_cte(grant).add_cte(decision).add_cte(entry))


class Precompiled:
    """A statement compiled once for a dialect and run on the driver's own cursor, in the caller's transaction:
    the gate's hot statements pay the driver (a few µs on SQLite) instead of SQLAlchemy's per-execution work
    (~60 µs here: cache key, parameter construction, result set-up, events). Parameters are processed by the
    statement's own bind processors (UTC datetimes, JSON), exactly as SQLAlchemy would; statements whose
    columns take Python-side defaults or need post-compilation are refused (``ValueError``)."""

    __slots__ = ("sql", "keys", "base", "procs", "columns", "results", "cursor_class")

    def __init__(self, stmt: Any, dialect: Any) -> None:
        self.cursor_class: Any = None  # the driver's default cursor
        compiled = stmt.compile(dialect=_dollar_params(dialect))
        if dialect.name == "postgresql":
            from psycopg import RawCursor  # (here: SQLite processes never import psycopg)
            self.cursor_class = RawCursor
        if compiled.insert_prefetch or compiled.update_prefetch or compiled.literal_execute_params \
                or compiled.post_compile_params:
            raise ValueError("this statement cannot run precompiled")
        self.sql = compiled.string
        self.keys = tuple(compiled.positiontup) if compiled.positional else None
        # values bound in the statement itself (``_one_of``'s), by their generated names
        self.base = {k: v for k, v in compiled.construct_params(_check=False).items() if v is not None}
        self.procs = dict(compiled._bind_processors)
        self.columns: tuple[str, ...] = ()
        self.results: tuple = ()
        if getattr(stmt, "is_select", False):
            self.columns = tuple(c.key for c in stmt.selected_columns)
            self.results = tuple(c.type._cached_result_processor(dialect, None) for c in stmt.selected_columns)

    def params(self, given: dict[str, Any]) -> Any:
        merged = {**self.base, **given} if self.base else given
        procs = self.procs
        if self.keys is not None:
            return tuple(procs[k](merged.get(k)) if k in procs else merged.get(k) for k in self.keys)
        return {k: (procs[k](v) if k in procs else v) for k, v in merged.items()}

    def execute(self, conn: Connection, params: dict[str, Any]) -> Any:
        driver: Any = conn.connection.driver_connection  # the sqlite3 / psycopg connection under the pool's
        cursor = driver.cursor() if self.cursor_class is None else self.cursor_class(driver)
        cursor.execute(self.sql, self.params(params))
        return cursor

    def first(self, conn: Connection, params: dict[str, Any]) -> SnapRow | None:
        cursor = self.execute(conn, params)
        try:
            raw = cursor.fetchone()
        finally:
            cursor.close()
        if raw is None:
            return None
        return SnapRow({k: (f(v) if f is not None else v) for k, v, f in zip(self.columns, raw, self.results,
                                                                            strict=True)})


def _dollar_params(dialect: Any) -> Any:
    """PostgreSQL: the dialect rendering ``$1`` placeholders, which psycopg's RawCursor sends as they are.
    psycopg parses a ``%(name)s`` statement again on every execution once it is over 4 KiB or 50 parameters (its
    cache's limit): ~330 µs of client CPU per gate snapshot here. Other dialects: unchanged."""
    if dialect.name != "postgresql":
        return dialect
    dollar = copy.copy(dialect)
    dollar.paramstyle, dollar.positional = "numeric_dollar", True
    return dollar


class SnapRow:
    """A result row of a Precompiled select: its columns as attributes and by ``_mapping`` (like a Row)."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


_PRECOMPILED: dict[tuple, Precompiled] = {}


def precompiled(conn: Connection, key: Any, build: Any) -> Precompiled:
    """The Precompiled statement ``build()`` for this connection's dialect, made once per (dialect, key)."""
    dialect = conn.dialect
    found = _PRECOMPILED.get((id(dialect), key))
    if found is None:
        if len(_PRECOMPILED) > 4096:
            _PRECOMPILED.clear()
        found = _PRECOMPILED[(id(dialect), key)] = Precompiled(build(), dialect)
    return found


def _values_insert(table: sa.Table, columns: Sequence[str]) -> Any:
    return sa.insert(table).values({c: sa.bindparam(c, type_=table.c[c].type) for c in columns})


def write_grant(conn: Connection, grant: dict[str, Any], decision: dict[str, Any], entry: dict[str, Any]) -> None:
    """Store a grant, its decision row and its audit entry (``storage.audit.next_entry``), and move the audit
    head to that entry: one statement on PostgreSQL, four on SQLite (which runs one statement at a time); each
    precompiled, on the driver's cursor."""
    if conn.dialect.name != "postgresql":
        for key, build, row in (("grant", lambda: _values_insert(GR, GRANT_COLUMNS), grant),
                                ("decision", lambda: _values_insert(DEC, DECISION_COLUMNS), decision),
                                ("entry", lambda: _values_insert(AUDIT, audit.ENTRY_COLUMNS), entry)):
            precompiled(conn, key, build).execute(conn, row).close()
        precompiled(conn, "head", lambda: audit.SET_HEAD).execute(
            conn, {"head_seq": entry["seq"], "head_hash": entry["hash"]}).close()
        conn.info[HEAD_WRITTEN] = entry["hash"]
        return
    params = {f"g_{c}": grant.get(c) for c in GRANT_COLUMNS}
    params.update({f"d_{c}": decision.get(c) for c in DECISION_COLUMNS})
    params.update({f"a_{c}": entry[c] for c in audit.ENTRY_COLUMNS})
    params["head_seq"], params["head_hash"] = entry["seq"], entry["hash"]
    precompiled(conn, "grant_write", _grant_write_stmt).execute(conn, params).close()
    conn.info[HEAD_WRITTEN] = entry["hash"]


def get_grant(conn: Connection, grant_id: str) -> Row | None:
    return conn.execute(sa.select(GR).where(GR.c.id == grant_id)).first()


def grants_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, Row]:
    ids = list(set(ids))
    if not ids:
        return {}
    return {r.id: r for r in conn.execute(sa.select(GR).where(GR.c.id.in_(ids)))}


def outcome_grants(conn: Connection, ids: Iterable[str]) -> dict[str, Row]:
    """The grants that outcome events about to be stored name, read under the command-events lock
    (``rollups.lock_events``, which the insert of those events takes anyway: here only earlier). Ingest runs
    without the store-wide write lock on PostgreSQL; two concurrent ingests of contradicting outcomes for one
    grant would both read it open and both be stored. Under the lock the second reads the first's outcome (a
    statement after the lock is granted sees what committed before it: READ COMMITTED). A batch naming no
    grant takes nothing here."""
    ids = list(set(ids))
    if not ids:
        return {}
    rollups.lock_events(conn)
    return grants_by_id(conn, ids)


def update_grant(conn: Connection, grant_id: str, *, only_from: Sequence[str] | None = None, **fields: Any) -> int:
    """Rows changed. ``only_from``: change the grant only while its status is one of these (0: it has moved on
    since it was read; on PostgreSQL an UPDATE that waited for a concurrent writer's row lock checks the
    status it committed)."""
    stmt = sa.update(GR).where(GR.c.id == grant_id)
    if only_from is not None:
        stmt = stmt.where(_one_of(GR.c.status, only_from))
    return conn.execute(stmt.values(**fields)).rowcount


def _counted(query: sa.Select, cap: int | None) -> sa.Select:
    """``count(*)`` of ``query``; with ``cap``, at most cap of its rows are read (a budget only needs to know
    whether it is spent, so a count costs the limit, not the history)."""
    if cap is not None:
        query = query.limit(cap)
    return sa.select(sa.func.count()).select_from(query.subquery())


# The gate runs these counts on every ask: each statement is built once per shape (types, service or not,
# cap) with its times as bind parameters, so an ask pays the query, not SQLAlchemy's statement building.


@functools.lru_cache(maxsize=512)
def _grants_since_stmt(types: tuple[str, ...], by_service: bool, cap: int | None) -> sa.Select:
    where = [_one_of(GR.c.command_type, types), GR.c.granted_at >= sa.bindparam("since")]
    if by_service:
        where.append(GR.c.service == sa.bindparam("service"))
    return _counted(sa.select(sa.literal(1)).where(*where), cap)


def grants_since(conn: Connection, types: Sequence[str], since: datetime, *, service: str | None = None,
                 cap: int | None = None) -> int:
    """Grants of these types issued since ``since``, whatever became of them (in flight, finished or expired)."""
    stmt = _grants_since_stmt(tuple(types), service is not None, cap)
    return conn.execute(stmt, {"since": since, "service": service}).scalar_one()


#: 'granted' written into the statement, not bound: PostgreSQL's generic plan (the gate forces one, see
#: engine/gate.py) knows from the column's statistics that few grants are in flight, and both stores can use
#: the partial index of open grants (storage/tables.py ``ix_grants_open_type_expires``)
_OPEN_LITERAL = sa.literal_column(f"'{OPEN}'", sa.String)


@functools.lru_cache(maxsize=512)
def _in_flight_stmt(types: tuple[str, ...] | None, by_service: bool, cap: int | None) -> sa.Select:
    where = [GR.c.status == _OPEN_LITERAL, GR.c.expires_at > sa.bindparam("now")]
    if types is not None:
        where.append(_one_of(GR.c.command_type, types))
        if by_service:
            where.append(GR.c.service == sa.bindparam("service"))
    return _counted(sa.select(sa.literal(1)).where(*where), cap)


def in_flight(conn: Connection, types: Sequence[str] | None, now: datetime, *, service: str | None = None,
              cap: int | None = None) -> int:
    stmt = _in_flight_stmt(tuple(types) if types is not None else None, service is not None, cap)
    return conn.execute(stmt, {"now": now, "service": service}).scalar_one()


# --- the gate's snapshot: everything one judgement reads, in one statement ------------------------


@dataclass(frozen=True)
class CountSpec:
    """The counts one policy's limits need (each read up to its cap; None: that limit is not set)."""

    types: tuple[str, ...]
    by_service: bool
    day_cap: int | None = None
    week_cap: int | None = None
    flying_cap: int | None = None
    last: bool = False  #: the newest grant's time (min_interval)
    #: windows ("day", "week") whose count of runs without a grant is brought up to date in the snapshot
    #: (parameters ``p{i}_{window}_seen`` and ``_cu``; see ``_unasked_more_cols``)
    more: tuple[str, ...] = ()


def _grant_count(where: list, cap: int | None) -> sa.ScalarSelect:
    return _counted(sa.select(sa.literal(1)).where(*where), cap).scalar_subquery()


@functools.lru_cache(maxsize=512)
def _snapshot_stmt(agent: bool, audit_head: bool, newest: bool, specs: tuple[CountSpec | None, ...]) -> sa.Select:
    cols: list = [*STATE.c]
    if agent:
        cols.append(sa.select(AG.c.lease_expires_at).where(AG.c.name == sa.bindparam("agent"))
                    .scalar_subquery().label("g_lease"))
    cols.append(sa.select(sa.literal(1)).where(HALF_OPEN.c.command_type == sa.bindparam("ctype"))
                .scalar_subquery().label("g_half_open"))
    if newest:
        cols.append(sa.select(sa.func.max(CMD.c.id)).scalar_subquery().label("g_newest"))
    for i, spec in enumerate(specs):
        if spec is None:
            continue
        scope = [_one_of(GR.c.command_type, spec.types)]
        if spec.by_service:
            scope.append(GR.c.service == sa.bindparam("service"))
        for name, cap in (("day", spec.day_cap), ("week", spec.week_cap)):
            if cap is not None:  # NULL, not read, while the audit head is the one of the caller's kept times
                count = _grant_count([*scope, GR.c.granted_at >= sa.bindparam(f"{name}_since")], cap)
                cols.append(sa.case((STATE.c.audit_head_hash == sa.bindparam(f"p{i}_known", type_=sa.String),
                                     sa.null()), else_=count).label(f"p{i}_{name}"))
        if spec.flying_cap is not None:
            cols.append(_grant_count([GR.c.status == _OPEN_LITERAL, GR.c.expires_at > sa.bindparam("now"), *scope],
                                     spec.flying_cap).label(f"p{i}_flying"))
        if spec.last:
            cols.append(sa.select(sa.func.max(GR.c.granted_at)).where(*scope).scalar_subquery().label(f"p{i}_last"))
        for window in spec.more:
            cols += _unasked_more_cols(f"p{i}_{window}_", spec.types, spec.by_service, f"{window}_since")
    frm: Any = STATE
    if audit_head:  # the chain's newest entry, as storage.audit.append reads it
        cols += [AUDIT.c.seq.label("a_seq"), AUDIT.c.hash.label("a_hash"), AUDIT.c.key_id.label("a_key")]
        frm = STATE.outerjoin(AUDIT, AUDIT.c.seq == sa.select(sa.func.max(AUDIT.c.seq)).scalar_subquery())
    return sa.select(*cols).select_from(frm).where(STATE.c.id == 1)


_GENERIC_PLANS = sa.text("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")


def plan_once(conn: Connection) -> None:
    """PostgreSQL: for the rest of this transaction, prepared statements keep one generic plan instead of
    planning each execution again. The snapshot's plan takes ~2 ms to make and ~0.5 ms to run, and PostgreSQL
    would re-plan it for every ask (its custom plans are cheaper on paper); psycopg prepares the statement
    after a few executions, so with this it is planned once per connection. No-op on SQLite."""
    if conn.dialect.name == "postgresql" and not conn.info.get(GENERIC_PLANS):  # else set by the lock statement
        conn.execute(_GENERIC_PLANS)


def gate_snapshot(conn: Connection, *, command_type: str, now: datetime, agent: str | None = None,
                  service: str | None = None, specs: tuple[CountSpec | None, ...] = (), newest: bool = False,
                  audit_head: bool = False, params: dict[str, Any] | None = None) -> SnapRow | None:
    """One statement for what the gate reads to judge an ask: the governance state row (its columns by
    name), the agent's lease expiry (``g_lease``, None: never beaten), whether the type is half-open
    (``g_half_open``), the newest command event id (``g_newest``), per CountSpec ``i`` the grants of the
    last day / week / in flight / the newest grant's time (``p{i}_day``, ``p{i}_week``, ``p{i}_flying``,
    ``p{i}_last``: the same counts as ``grants_since``, ``in_flight`` and ``newest_grant_at``), and with
    ``audit_head`` the audit chain's newest entry (``a_seq``, ``a_hash``, ``a_key``) for
    ``storage.audit.append``. None when the store has no governance state. ``params``: the windows'
    ``seen``/``cu`` of CountSpec.more and ``until``, their end (now + the clock skew accepted); ``p{i}_known``: the
    audit head at which the caller keeps the day's and week's grants of CountSpec ``i`` (engine/policies.py
    ``_GrantTimes``): while the state's head is that one, ``p{i}_day`` and ``p{i}_week`` are NULL, not counted."""
    shape = (agent is not None, audit_head, newest, specs)
    stmt = precompiled(conn, ("snapshot", shape), lambda: _snapshot_stmt(*shape))
    given = {"agent": agent, "ctype": command_type, "service": service, "now": now,
             "day_since": now - timedelta(days=1), "week_since": now - timedelta(days=7), "until": None}
    for i, spec in enumerate(specs):  # no kept grant times: the snapshot counts the day's and week's grants
        if spec is not None and (spec.day_cap is not None or spec.week_cap is not None):
            given[f"p{i}_known"] = None
    given.update(params or {})
    return stmt.first(conn, given)


@functools.lru_cache(maxsize=512)
def _grant_times_stmt(types: tuple[str, ...], by_service: bool) -> sa.Select:
    where = [_one_of(GR.c.command_type, types), GR.c.granted_at >= sa.bindparam("since")]
    if by_service:
        where.append(GR.c.service == sa.bindparam("service"))
    return sa.select(GR.c.granted_at).where(*where).order_by(GR.c.granted_at.desc()).limit(sa.bindparam("n"))


def grant_times(conn: Connection, types: Sequence[str], since: datetime, n: int, *,
                service: str | None = None) -> list[datetime]:
    """The times of the newest ``n`` grants of these types issued since ``since`` (whatever became of them),
    oldest first: a count of them from any later ``since`` up to ``n`` is ``grants_since``'s."""
    rows = conn.execute(_grant_times_stmt(tuple(types), service is not None),
                        {"since": since, "service": service, "n": n}).scalars().all()
    return [_aware(at, since) for at in reversed(rows)]


def newest_grant_at(conn: Connection, types: Sequence[str], *, service: str | None = None) -> datetime | None:
    return conn.execute(sa.select(sa.func.max(GR.c.granted_at)).where(*_scope(GR, types, service))).scalar_one()


def _unasked_where(types: Sequence[str], by_service: bool, table: Any = CMD, since: str = "since",
                   until: str = "until") -> list:
    where = [table.c.at >= sa.bindparam(since), table.c.at < sa.bindparam(until), table.c.autonomous.is_(True),
             _one_of(table.c.command_type, types), _one_of(table.c.status, EXECUTED),
             ~sa.exists().where(GR.c.id == table.c.command_id)]
    if by_service and "service" in table.c:
        where.append(table.c.service == sa.bindparam("service"))
    return where


def _unasked_more_cols(prefix: str, types: tuple[str, ...], by_service: bool, since: str) -> list:
    """Scalar subqueries for the snapshot: what a count of ``executions_without_grant`` taken when the newest
    command event id was ``:{prefix}seen`` over a window ending at an earlier ``until`` has missed by now, in
    the usual case where no run without a grant arrived since (an agent's outcome names its grant): then
    ``{prefix}more`` is the count of runs stored before that entered the window since (``:{prefix}lo`` being
    the later of the window's start and that earlier end), as ``executions_without_grant_since_count`` counts
    them. ``{prefix}more`` is NULL when such a run did arrive (the caller then counts the update itself: a
    command reported before must not be counted twice, and that check is no job for one statement);
    ``{prefix}arrived`` is the command events stored since, read up to ARRIVALS_READ + 1 (more than
    ARRIVALS_READ: count the window again)."""
    seen: sa.BindParameter[Any] = sa.bindparam(f"{prefix}seen")
    cols = [CMD.c.id, CMD.c.command_id, CMD.c.command_type, CMD.c.autonomous, CMD.c.status, CMD.c.at]
    if by_service and "service" in CMD.c:
        cols.append(CMD.c.service)
    # the arrivals, read by primary key (LIMIT keeps them a subquery of their own: no index of the window's)
    first = sa.select(*cols).where(CMD.c.id > seen).order_by(CMD.c.id).limit(ARRIVALS_READ + 1).subquery()
    arrived_n = sa.select(sa.func.count()).select_from(first).scalar_subquery()
    unasked_arrived = sa.exists().where(*_unasked_where(types, by_service, first, since, "until"))
    entered_where = [CMD.c.id <= seen, CMD.c.at >= sa.bindparam(f"{prefix}lo"), CMD.c.at < sa.bindparam("until"),
                     *_unasked_where(types, by_service, CMD, since, "until")[2:]]
    entered = sa.select(sa.func.count(sa.distinct(CMD.c.command_id))).where(*entered_where).scalar_subquery()
    more = sa.case((sa.and_(arrived_n <= ARRIVALS_READ, ~unasked_arrived), entered), else_=sa.null())
    return [arrived_n.label(f"{prefix}arrived"), more.label(f"{prefix}more")]


@functools.lru_cache(maxsize=512)
def _unasked_stmt(types: tuple[str, ...], by_service: bool, cap: int | None) -> sa.Select:
    return _counted(sa.select(CMD.c.command_id).where(*_unasked_where(types, by_service)).distinct(), cap)


def executions_without_grant(conn: Connection, types: Sequence[str], since: datetime, until: datetime, *,
                             service: str | None = None, cap: int | None = None) -> int:
    """Distinct autonomous commands of these types reported as run (succeeded, failed, rolled back) that
    name no grant: agents that act without asking still use up the budget."""
    stmt = _unasked_stmt(tuple(types), service is not None, cap)
    return conn.execute(stmt, {"since": since, "until": until, "service": service}).scalar_one()


#: more command events than this stored since a count: the window is counted again instead
ARRIVALS_READ = 1000


_ARRIVED = (sa.select(CMD.c.id, CMD.c.command_id, CMD.c.command_type, CMD.c.autonomous, CMD.c.status, CMD.c.at,
                      *([CMD.c.service] if "service" in CMD.c else []))
            .where(CMD.c.id > sa.bindparam("after_id"), CMD.c.id <= sa.bindparam("upto_id"))
            .order_by(CMD.c.id).limit(ARRIVALS_READ + 1))


def newest_command_event_id(conn: Connection) -> int:
    """The highest row id of command_events (the primary key's end): it changes when events arrive."""
    return conn.execute(_NEWEST_COMMAND_EVENT).scalar_one() or 0


@functools.lru_cache(maxsize=512)
def _unasked_entered_stmt(types: tuple[str, ...], by_service: bool) -> sa.Select:
    return sa.select(sa.func.count(sa.distinct(CMD.c.command_id))).where(
        CMD.c.id <= sa.bindparam("after_id"), CMD.c.at >= sa.bindparam("entered_from"),
        *_unasked_where(types, by_service))


def executions_without_grant_since_count(conn: Connection, types: Sequence[str], since: datetime, until: datetime,
                                         *, after_id: int, upto_id: int, counted_until: datetime,
                                         service: str | None = None, memo: dict | None = None) -> int | None:
    """What a count of ``executions_without_grant`` taken when the newest command event id was ``after_id``,
    over a window ending at ``counted_until``, has missed by now: runs stored since (ids up to ``upto_id``,
    read by primary key, with ``at`` in the window; a command counted then is not counted again) plus runs
    stored before but stamped ahead, which have entered the window since ``counted_until``. A few small
    seeks instead of the window's scan; the caller adds them to the earlier count (which runs that aged
    out of the window since only make too high: the safe side). None when more than ARRIVALS_READ events
    arrived: count the window again. ``memo`` (a dict) shares the arrivals between windows of one ask."""
    memo = {} if memo is None else memo
    arrived = memo.get(("arrived", after_id, upto_id))
    if arrived is None:
        arrived = memo[("arrived", after_id, upto_id)] = conn.execute(
            _ARRIVED, {"after_id": after_id, "upto_id": upto_id}).all()
    if len(arrived) > ARRIVALS_READ:
        return None
    wanted = set(types)
    ids = {r.command_id for r in arrived
           if r.command_type in wanted and r.autonomous and r.status in EXECUTED
           and since <= _aware(r.at, since) < until and (service is None or getattr(r, "service", None) == service)}
    if ids:
        ids -= _granted(conn, ids, memo)
    if ids:  # reported before too (another status of the same command): counted then already
        ids -= set(conn.execute(sa.select(CMD.c.command_id).where(
            CMD.c.command_id.in_(list(ids)), CMD.c.id <= after_id, *_unasked_where(types, service is not None)),
            {"since": since, "until": until, "service": service}).scalars())
    entered = 0
    if until > counted_until:
        entered = conn.execute(_unasked_entered_stmt(tuple(types), service is not None),
                               {"since": since, "until": until, "service": service, "after_id": after_id,
                                "entered_from": counted_until}).scalar_one()
    return len(ids) + entered


def _granted(conn: Connection, ids: set[str], memo: dict) -> set[str]:
    """Which of these command ids are grants' ids (their events are outcomes, not unasked runs)."""
    unknown = [i for i in ids if ("granted", i) not in memo]
    if len(unknown) == 1:  # the usual arrival: one agent's outcome, which names its grant
        found = set(conn.execute(_GRANT_ID, {"id": unknown[0]}).scalars())
    else:
        found = set(conn.execute(sa.select(GR.c.id).where(GR.c.id.in_(unknown))).scalars()) if unknown else set()
    for i in unknown:
        memo[("granted", i)] = i in found
    return {i for i in ids if memo[("granted", i)]}


def _aware(at: datetime, like: datetime) -> datetime:
    """A stored time comparable with ``like`` (SQLite gives naive UTC back unless the column type converts)."""
    if at.tzinfo is None and like.tzinfo is not None:
        return at.replace(tzinfo=like.tzinfo)
    return at


def list_grants(conn: Connection, *, status: str | None = None, in_flight_at: datetime | None = None,
                since: datetime | None = None, limit: int = 100) -> list[Row]:
    q = sa.select(GR)
    if status is not None:
        q = q.where(GR.c.status == status)
    if in_flight_at is not None:
        q = q.where(GR.c.status == OPEN, GR.c.expires_at > in_flight_at)
    if since is not None:
        q = q.where(GR.c.granted_at >= since)
    return list(conn.execute(q.order_by(GR.c.granted_at.desc(), GR.c.id).limit(limit)).all())


def due_grants(conn: Connection, now: datetime, *, limit: int = 500) -> list[Row]:
    return list(conn.execute(sa.select(GR).where(GR.c.status == OPEN, GR.c.expires_at <= now)
                             .order_by(GR.c.expires_at).limit(limit)).all())


def count_grants_by_status(conn: Connection, now: datetime) -> dict[str, int]:
    rows = conn.execute(sa.select(GR.c.status, sa.func.count()).group_by(GR.c.status)).all()
    out = {s: n for s, n in rows}
    out["inFlight"] = in_flight(conn, None, now)
    return out


# --- action requests --------------------------------------------------------------------------


def insert_request(conn: Connection, **row: Any) -> None:
    conn.execute(sa.insert(REQ).values(**row))


def get_request(conn: Connection, request_id: str) -> Row | None:
    return conn.execute(sa.select(REQ).where(REQ.c.id == request_id)).first()


def update_request(conn: Connection, request_id: str, **fields: Any) -> int:
    return conn.execute(sa.update(REQ).where(REQ.c.id == request_id).values(**fields)).rowcount


def list_requests(conn: Connection, *, status: str | None = None, limit: int = 100) -> list[Row]:
    q = sa.select(REQ)
    if status is not None:
        q = q.where(REQ.c.status == status)
    return list(conn.execute(q.order_by(REQ.c.requested_at.desc(), REQ.c.id).limit(limit)).all())


def due_requests(conn: Connection, now: datetime, *, limit: int = 500) -> list[Row]:
    return list(conn.execute(sa.select(REQ).where(REQ.c.status == PENDING, REQ.c.expires_at <= now)
                             .order_by(REQ.c.expires_at).limit(limit)).all())


def count_pending_requests(conn: Connection, now: datetime) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(REQ)
                        .where(REQ.c.status == PENDING, REQ.c.expires_at > now)).scalar_one()


# --- the decision log -------------------------------------------------------------------------


def insert_decisions(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if len(rows) == 1:
        conn.execute(_INSERT_DECISION, rows[0])
    elif rows:
        conn.execute(_INSERT_DECISION, list(rows))


def list_decisions(conn: Connection, *, since: datetime | None = None, limit: int = 100) -> list[Row]:
    q = sa.select(DEC)
    if since is not None:
        q = q.where(DEC.c.at >= since)
    return list(conn.execute(q.order_by(DEC.c.at.desc(), DEC.c.id.desc()).limit(limit)).all())


def outcomes_naming_no_grant(conn: Connection, since: datetime, *, prefix: str, limit: int = 100) -> list[Row]:
    """Command events whose id looks like a grant's but names none: an agent reporting against a grant
    that never existed (flagged in `govcon gate log`)."""
    return list(conn.execute(sa.select(CMD.c.command_id, CMD.c.command_type, CMD.c.status, CMD.c.at)
                        .where(CMD.c.at >= since, CMD.c.command_id.startswith(prefix),
                               ~sa.exists().where(GR.c.id == CMD.c.command_id))
                        .order_by(CMD.c.at.desc()).limit(limit)).all())
