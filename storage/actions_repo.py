"""Grants, action requests and the gate's decision log: the rows behind governed actions."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import action_requests as REQ
from storage.tables import command_events as CMD
from storage.tables import gate_decisions as DEC
from storage.tables import grants as GR

OPEN = "granted"
EXECUTED = ("succeeded", "failed", "rolled_back")


def _scope(table: sa.Table, types: Sequence[str], service: str | None) -> list:
    where = [table.c.command_type.in_(list(types))]
    if service is not None:
        where.append(table.c.service == service)
    return where


# --- grants -----------------------------------------------------------------------------------


_INSERT_GRANT = sa.insert(GR)
_INSERT_DECISION = sa.insert(DEC)
_NEWEST_COMMAND_EVENT = sa.select(sa.func.max(CMD.c.id))
_GRANT_ID = sa.select(GR.c.id).where(GR.c.id == sa.bindparam("id"))


def insert_grant(conn: Connection, **row: Any) -> None:
    conn.execute(_INSERT_GRANT, row)  # a prebuilt statement with the row as parameters: no .values() per call


def get_grant(conn: Connection, grant_id: str) -> Row | None:
    return conn.execute(sa.select(GR).where(GR.c.id == grant_id)).first()


def grants_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, Row]:
    ids = list(set(ids))
    if not ids:
        return {}
    return {r.id: r for r in conn.execute(sa.select(GR).where(GR.c.id.in_(ids)))}


def update_grant(conn: Connection, grant_id: str, **fields: Any) -> None:
    conn.execute(sa.update(GR).where(GR.c.id == grant_id).values(**fields))


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
    where = [GR.c.command_type.in_(list(types)), GR.c.granted_at >= sa.bindparam("since")]
    if by_service:
        where.append(GR.c.service == sa.bindparam("service"))
    return _counted(sa.select(sa.literal(1)).where(*where), cap)


def grants_since(conn: Connection, types: Sequence[str], since: datetime, *, service: str | None = None,
                 cap: int | None = None) -> int:
    """Grants of these types issued since ``since``, whatever became of them (in flight, finished or expired)."""
    stmt = _grants_since_stmt(tuple(types), service is not None, cap)
    return conn.execute(stmt, {"since": since, "service": service}).scalar_one()


@functools.lru_cache(maxsize=512)
def _in_flight_stmt(types: tuple[str, ...] | None, by_service: bool, cap: int | None) -> sa.Select:
    where = [GR.c.status == OPEN, GR.c.expires_at > sa.bindparam("now")]
    if types is not None:
        where.append(GR.c.command_type.in_(list(types)))
        if by_service:
            where.append(GR.c.service == sa.bindparam("service"))
    return _counted(sa.select(sa.literal(1)).where(*where), cap)


def in_flight(conn: Connection, types: Sequence[str] | None, now: datetime, *, service: str | None = None,
              cap: int | None = None) -> int:
    stmt = _in_flight_stmt(tuple(types) if types is not None else None, service is not None, cap)
    return conn.execute(stmt, {"now": now, "service": service}).scalar_one()


def newest_grant_at(conn: Connection, types: Sequence[str], *, service: str | None = None) -> datetime | None:
    return conn.execute(sa.select(sa.func.max(GR.c.granted_at)).where(*_scope(GR, types, service))).scalar_one()


def _unasked_where(types: Sequence[str], by_service: bool) -> list:
    where = [CMD.c.at >= sa.bindparam("since"), CMD.c.at < sa.bindparam("until"), CMD.c.autonomous.is_(True),
             CMD.c.command_type.in_(list(types)), CMD.c.status.in_(EXECUTED),
             ~sa.exists().where(GR.c.id == CMD.c.command_id)]
    if by_service and "service" in CMD.c:
        where.append(CMD.c.service == sa.bindparam("service"))
    return where


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
    return conn.execute(q.order_by(GR.c.granted_at.desc(), GR.c.id).limit(limit)).all()


def due_grants(conn: Connection, now: datetime, *, limit: int = 500) -> list[Row]:
    return conn.execute(sa.select(GR).where(GR.c.status == OPEN, GR.c.expires_at <= now)
                        .order_by(GR.c.expires_at).limit(limit)).all()


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
    return conn.execute(q.order_by(REQ.c.requested_at.desc(), REQ.c.id).limit(limit)).all()


def due_requests(conn: Connection, now: datetime, *, limit: int = 500) -> list[Row]:
    return conn.execute(sa.select(REQ).where(REQ.c.status == "pending", REQ.c.expires_at <= now)
                        .order_by(REQ.c.expires_at).limit(limit)).all()


def count_pending_requests(conn: Connection, now: datetime) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(REQ)
                        .where(REQ.c.status == "pending", REQ.c.expires_at > now)).scalar_one()


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
    return conn.execute(q.order_by(DEC.c.at.desc(), DEC.c.id.desc()).limit(limit)).all()


def outcomes_naming_no_grant(conn: Connection, since: datetime, *, prefix: str, limit: int = 100) -> list[Row]:
    """Command events whose id looks like a grant's but names none: an agent reporting against a grant
    that never existed (flagged in `govcon gate log`)."""
    return conn.execute(sa.select(CMD.c.command_id, CMD.c.command_type, CMD.c.status, CMD.c.at)
                        .where(CMD.c.at >= since, CMD.c.command_id.startswith(prefix),
                               ~sa.exists().where(GR.c.id == CMD.c.command_id))
                        .order_by(CMD.c.at.desc()).limit(limit)).all()
