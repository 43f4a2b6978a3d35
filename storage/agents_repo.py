"""Agents and their leases: the rows behind heartbeats, the gate's lease check and the lapse alert."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import agents as AG
from storage.tables import grants as GR

OPEN = "granted"  # a grant in flight (storage/actions_repo.OPEN)

_LEASE = sa.select(AG.c.lease_expires_at).where(AG.c.name == sa.bindparam("name"))


def get(conn: Connection, name: str) -> Row | None:
    return conn.execute(sa.select(AG).where(AG.c.name == name)).first()


def lease_expiry(conn: Connection, name: str) -> datetime | None | bool:
    """The stored lease expiry of ``name``; False when the agent has never beaten (one primary-key read:
    the gate calls this for every ask naming an agent)."""
    row = conn.execute(_LEASE, {"name": name}).first()
    return False if row is None else row[0]


def insert(conn: Connection, **row: Any) -> None:
    conn.execute(sa.insert(AG).values(**row))


def renew(conn: Connection, name: str, *, at: datetime, expires_at: datetime, ttl_seconds: int, operator: str,
          token_id: str | None) -> int:
    """One beat on an existing agent: one single-row UPDATE."""
    return conn.execute(sa.update(AG).where(AG.c.name == name).values(
        last_beat_at=at, lease_expires_at=expires_at, ttl_seconds=ttl_seconds, beats=AG.c.beats + 1,
        last_operator=operator, last_token_id=token_id)).rowcount


def renew_live(conn: Connection, name: str, *, at: datetime, expires_at: datetime, ttl_seconds: int, now: datetime,
               operator: str, token_id: str | None) -> bool:
    """A renewal group-committed after the beat at ``at``: applied only while the stored lease is still
    live (now) — a lease that lapsed before it got here stays lapsed — and never shortening it."""
    return conn.execute(sa.update(AG).where(AG.c.name == name, AG.c.lease_expires_at > now,
                                            AG.c.lease_expires_at > at).values(
        lease_expires_at=sa.case((AG.c.lease_expires_at < expires_at, expires_at), else_=AG.c.lease_expires_at),
        ttl_seconds=ttl_seconds, last_operator=operator, last_token_id=token_id)).rowcount > 0


def record_beats(conn: Connection, beats: list[tuple[str, datetime, int]]) -> None:
    """Beats that did not move a lease, group-committed: (name, last beat, how many). Never moves an
    agent's last beat back (a beat written at once since then is newer)."""
    if not beats:
        return
    conn.execute(sa.update(AG).where(AG.c.name == sa.bindparam("b_name")).values(
        beats=AG.c.beats + sa.bindparam("b_n"),
        last_beat_at=sa.case((AG.c.last_beat_at < sa.bindparam("b_at"), sa.bindparam("b_at")),
                             else_=AG.c.last_beat_at)),
        [{"b_name": name, "b_at": at, "b_n": n} for name, at, n in beats])


def mark_lapse_alerted(conn: Connection, name: str, expiry: datetime) -> None:
    conn.execute(sa.update(AG).where(AG.c.name == name).values(lapse_alerted_for=expiry))


def list_all(conn: Connection, *, limit: int = 1000) -> list[Row]:
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


def live_at(conn: Connection, at: datetime) -> list[Row]:
    """Agents whose lease was live at ``at`` (or is still): the ones a kill switch engaged then must stop."""
    return conn.execute(sa.select(AG).where(AG.c.lease_expires_at > at).order_by(AG.c.name)).all()


def in_flight_grants(conn: Connection, now: datetime, *, agent: str | None = None, limit: int = 20) -> list[Row]:
    q = sa.select(GR.c.id, GR.c.agent, GR.c.command_type, GR.c.expires_at).where(GR.c.status == OPEN,
                                                                                 GR.c.expires_at > now)
    if agent is not None:
        q = q.where(GR.c.agent == agent)
    return conn.execute(q.order_by(GR.c.expires_at).limit(limit)).all()
