"""What the console shows, read from the store in worker threads and handed to the UI as plain values.

``load_live`` runs every second (cheap: state, rules over their short windows, open events, pending
proposals); ``load_slow`` every few seconds (readiness assessment, trend series). Neither touches
Textual: the caller posts the result to the event loop as a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.breakers import event_json
from engine.governance import Governance
from engine.rule_status import RuleStatus, rule_statuses
from engine.trends import TrendData, load_trends
from screens.action_view import four_eyes_relaxed
from screens.errors import describe_error
from storage import breaker_repo, identity_repo, outbox_repo

RECENT_EVENTS = 50


@dataclass(frozen=True)
class LiveData:
    at: datetime
    status: dict[str, Any] | None = None
    rules: tuple[RuleStatus, ...] = ()
    unresolved: tuple[dict[str, Any], ...] = ()
    recent_ids: frozenset[str] = frozenset()      # newest breaker events, for noticing trips
    recent: tuple[dict[str, Any], ...] = ()
    pending: tuple[dict[str, Any], ...] = ()
    roles: frozenset[str] = frozenset()
    error: str | None = None                     # the store could not be read
    dead_alerts: int = 0                         # alerts given up on: `govcon alerts list`
    marker: dict[str, Any] | None = None         # the kill switch's marker file, read without the store
    four_eyes_relaxed: bool = False              # the demo's scratch store: `a` may approve one's own

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None


@dataclass(frozen=True)
class SlowData:
    at: datetime
    readiness: dict[str, Any] | None = None
    trends: TrendData | None = None
    error: str | None = None


def _read_remotely(gov: Governance, what: str, kind: type) -> Any:
    """Client mode (console/client.py): the service reads, as the caller the socket names, in one call."""
    try:
        return gov.console_read(what)  # type: ignore[attr-defined]
    except Exception as exc:  # the service unreachable: the header says so, as for a store
        return kind(gov.clock.now(), error=describe_error(exc))


def load_live(gov: Governance, operator: str) -> LiveData:
    if getattr(gov, "remote", False):
        return _read_remotely(gov, "live", LiveData)
    now = gov.clock.now()
    found = gov.kill_marker.engaged()  # first, and whatever the store does
    marker = found.to_json() if found is not None else None
    try:
        status = gov.status(with_readiness=False)
        with gov.store.read() as conn:
            rules = tuple(rule_statuses(conn, now))
            recent = tuple(event_json(r) for r in breaker_repo.list_events(conn, limit=RECENT_EVENTS))
            unresolved = tuple(event_json(r) for r in breaker_repo.list_events(conn, unresolved_only=True))
            roles = frozenset(identity_repo.roles_of(conn, operator))
            dead_alerts = outbox_repo.count(conn, status="dead")
            relaxed = four_eyes_relaxed(conn)
        pending = tuple(gov.proposals.list(status="pending"))
    except Exception as exc:  # StoreUnavailable above all; the console keeps running either way
        return LiveData(now, error=describe_error(exc), marker=marker)
    return LiveData(now, status, rules, unresolved, frozenset(e["id"] for e in recent), recent, pending, roles,
                    dead_alerts=dead_alerts, marker=marker, four_eyes_relaxed=relaxed)


def load_slow(gov: Governance) -> SlowData:
    if getattr(gov, "remote", False):
        return _read_remotely(gov, "slow", SlowData)
    now = gov.clock.now()
    try:
        report = gov.readiness.assess()
        readiness = report.to_json()
        with gov.store.read() as conn:
            trend = load_trends(conn, now, current_score=report.score)
    except Exception as exc:
        return SlowData(now, error=describe_error(exc))
    return SlowData(now, readiness, trend)
