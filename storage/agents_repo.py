"""Agents and their leases: the rows behind heartbeats, the gate's lease check and the lapse alert."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import agents as AG
from storage.tables import grants as GR

OPEN = "granted"  # a grant in flight (storage/actions_repo.OPEN)

_LEASE = sa.select(AG.c.lease_expires_at).where(AG.c.name == sa.bindparam("name"))


def get(conn: Connection, name: str) -> Row | None:
    return conn.execute(sa.select(AG).where(AG.c.name == name)).first()


def lease_expiry(conn: Connection, name: str) -> datetime | Literal[False]:
    """The stored lease expiry of ``name``; False when the agent has never beaten (one primary-key read:
    the gate calls this for every ask naming an agent)."""
    row = conn.execute(_LEASE, {"name": name}).first()
    return False if row is None else row[0]  # the column is NOT NULL


def insert(conn: Connection, **row: Any) -> None:
    conn.execute(sa.insert(AG).values(**row))


def renew(conn: Connection, name: str, *, at: datetime, expires_at: datetime, ttl_seconds: int, operator: str,
          token_id: str | None) -> int:
    """One beat on an existing agent: one single-row UPDATE."""
    return conn.execute(sa.update(AG).where(AG.c.name == name).values(
        last_beat_at=at, lease_expires_at=expires_at, ttl_seconds=ttl_seconds, beats=AG.c.beats + 1,
        last_operator=operator, last_token_id=token_id)).rowcount


def record_beats(conn: Connection, beats: list[tuple[str, datetime, int]]) -> None:
    """Beats that did not move a lease, group-committed: (name, last beat, how many). Never moves an
    agent's last beat back (a beat written at once since then is newer). One prepared statement run by the
    driver's executemany, datetimes converted as the column type does: SQLAlchemy's per-row bind processing
    cost more CPU (on a thread, holding the GIL the event loop needs) than the rows' writes."""
    if not beats:
        return
    sql, dt = _raw(conn, _RECORD_BEATS)
    conn.exec_driver_sql(sql, [(n, dt(at), dt(at), name) for name, at, n in beats])


def renew_live(conn: Connection, name: str, *, at: datetime, expires_at: datetime, ttl_seconds: int, now: datetime,
               operator: str, token_id: str | None) -> bool:
    """A renewal group-committed after the beat at ``at``: applied only while the stored lease is still
    live (now) — a lease that lapsed before it got here stays lapsed — and never shortening it."""
    return not renew_live_many(conn, [(name, (at, expires_at, ttl_seconds, operator, token_id))], now=now)


def renew_live_many(conn: Connection, renewals: list[tuple[str, tuple[datetime, datetime, int, str, str | None]]],
                    *, now: datetime) -> list[str]:
    """``renew_live`` for many (name, (beat at, new expiry, ttl, operator, token id)) in one executemany;
    returns the names not renewed (lapsed in the store, or gone)."""
    if not renewals:
        return []
    sql, dt = _raw(conn, _RENEW_LIVE)
    now_db = dt(now)
    result = conn.exec_driver_sql(sql, [
        (dt(expires), dt(expires), ttl, operator, token_id, name, now_db, dt(at))
        for name, (at, expires, ttl, operator, token_id) in renewals])
    if result.rowcount == len(renewals):
        return []
    # some were not applied: those whose stored lease is now earlier than the renewal asked (an applied one
    # is at least that late)
    wanted = {name: r[1] for name, r in renewals}
    stored = dict(conn.execute(sa.select(AG.c.name, AG.c.lease_expires_at).where(AG.c.name.in_(list(wanted)))).all())
    return [name for name, expires in wanted.items() if name not in stored or stored[name] < expires]


_RECORD_BEATS = ("UPDATE agents SET beats = beats + ?, last_beat_at = CASE WHEN last_beat_at < ? THEN ? "
                 "ELSE last_beat_at END WHERE name = ?")
_RENEW_LIVE = ("UPDATE agents SET lease_expires_at = CASE WHEN lease_expires_at < ? THEN ? ELSE lease_expires_at "
               "END, ttl_seconds = ?, last_operator = ?, last_token_id = ? "
               "WHERE name = ? AND lease_expires_at > ? AND lease_expires_at > ?")
_RAW: dict[tuple[str, str], tuple[str, Callable[[datetime], Any]]] = {}


def _raw(conn: Connection, sql: str) -> tuple[str, Callable[[datetime], Any]]:
    """``sql`` (written with ``?``) in the driver's parameter style, and the datetime conversion of the
    agents table's columns on this dialect (storage/types.py UTCDateTime, then the dialect's own)."""
    dialect = conn.dialect
    key = (dialect.name, sql)
    hit = _RAW.get(key)
    if hit is None:
        text = sql if dialect.paramstyle == "qmark" else sql.replace("?", "%s")
        proc = AG.c.last_beat_at.type.bind_processor(dialect)
        hit = _RAW[key] = (text, proc if proc is not None else _same)
    return hit


def _same(value: datetime) -> datetime:
    return value


def mark_lapse_alerted(conn: Connection, name: str, expiry: datetime) -> None:
    conn.execute(sa.update(AG).where(AG.c.name == name).values(lapse_alerted_for=expiry))


def list_all(conn: Connection, *, limit: int = 1000) -> Sequence[Row]:
    return conn.execute(sa.select(AG).order_by(AG.c.name).limit(limit)).all()


def in_flight_by_agent(conn: Connection, now: datetime, names: list[str] | None = None) -> dict[str, int]:
    """Grants in flight per agent (the in-flight set is small: a seek on ix_grants_status_expires)."""
    q = (sa.select(GR.c.agent, sa.func.count()).where(GR.c.status == OPEN, GR.c.expires_at > now)
         .group_by(GR.c.agent))
    if names is not None:
        q = q.where(GR.c.agent.in_(names))
    return {agent: n for agent, n in conn.execute(q)}


def lapsed_with_grants(conn: Connection, now: datetime, *, limit: int = 500) -> list[tuple[Row, int]]:
    """Agents whose lease has lapsed, whose lapse is not alerted yet, and who hold grants in flight."""
    flight = (sa.select(GR.c.agent.label("agent"), sa.func.count().label("n"))
              .where(GR.c.status == OPEN, GR.c.expires_at > now).group_by(GR.c.agent).subquery())
    q = (sa.select(AG, flight.c.n).join(flight, flight.c.agent == AG.c.name)
         .where(AG.c.lease_expires_at <= now,
                sa.or_(AG.c.lapse_alerted_for.is_(None), AG.c.lapse_alerted_for != AG.c.lease_expires_at))
         .order_by(AG.c.name).limit(limit))
    return [(row, row.n) for row in conn.execute(q)]


def live_at(conn: Connection, at: datetime) -> Sequence[Row]:
    """Agents whose lease was live at ``at`` (or is still): the ones a kill switch engaged then must stop."""
    return conn.execute(sa.select(AG).where(AG.c.lease_expires_at > at).order_by(AG.c.name)).all()


def in_flight_grants(conn: Connection, now: datetime, *, agent: str | None = None,
                     limit: int = 20) -> Sequence[Row]:
    q = sa.select(GR.c.id, GR.c.agent, GR.c.command_type, GR.c.expires_at).where(GR.c.status == OPEN,
                                                                                 GR.c.expires_at > now)
    if agent is not None:
        q = q.where(GR.c.agent == agent)
    return conn.execute(q.order_by(GR.c.expires_at).limit(limit)).all()
