"""Grants, action requests and the gate's decision log: the rows behind governed actions."""

from __future__ import annotations

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


def insert_grant(conn: Connection, **row: Any) -> None:
    conn.execute(sa.insert(GR).values(**row))


def get_grant(conn: Connection, grant_id: str) -> Row | None:
    return conn.execute(sa.select(GR).where(GR.c.id == grant_id)).first()


def grants_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, Row]:
    ids = list(set(ids))
    if not ids:
        return {}
    return {r.id: r for r in conn.execute(sa.select(GR).where(GR.c.id.in_(ids)))}


def update_grant(conn: Connection, grant_id: str, **fields: Any) -> None:
    conn.execute(sa.update(GR).where(GR.c.id == grant_id).values(**fields))


def _count(conn: Connection, query: sa.Select, cap: int | None) -> int:
    """Rows of ``query``; with ``cap``, at most cap of them are read (a budget only needs to know whether
    it is spent, so a count costs the limit, not the history)."""
    if cap is not None:
        query = query.limit(cap)
    return conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()


def grants_since(conn: Connection, types: Sequence[str], since: datetime, *, service: str | None = None,
                 cap: int | None = None) -> int:
    """Grants of these types issued since ``since``, whatever became of them (in flight, finished or expired)."""
    return _count(conn, sa.select(sa.literal(1)).where(*_scope(GR, types, service), GR.c.granted_at >= since), cap)


def in_flight(conn: Connection, types: Sequence[str] | None, now: datetime, *, service: str | None = None,
              cap: int | None = None) -> int:
    where = [GR.c.status == OPEN, GR.c.expires_at > now]
    if types is not None:
        where += _scope(GR, types, service)
    return _count(conn, sa.select(sa.literal(1)).where(*where), cap)


def newest_grant_at(conn: Connection, types: Sequence[str], *, service: str | None = None) -> datetime | None:
    return conn.execute(sa.select(sa.func.max(GR.c.granted_at)).where(*_scope(GR, types, service))).scalar_one()


def executions_without_grant(conn: Connection, types: Sequence[str], since: datetime, until: datetime, *,
                             service: str | None = None, cap: int | None = None) -> int:
    """Distinct autonomous commands of these types reported as run (succeeded, failed, rolled back) that
    name no grant: agents that act without asking still use up the budget."""
    where = [CMD.c.at >= since, CMD.c.at < until, CMD.c.autonomous.is_(True), CMD.c.command_type.in_(list(types)),
             CMD.c.status.in_(EXECUTED), ~sa.exists().where(GR.c.id == CMD.c.command_id)]
    if service is not None and "service" in CMD.c:
        where.append(CMD.c.service == service)
    return _count(conn, sa.select(CMD.c.command_id).where(*where).distinct(), cap)


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
    if rows:
        conn.execute(sa.insert(DEC), list(rows))


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
