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
from screens.engine_api import EngineApi
from screens.errors import describe_error
from screens.rule_status import RuleStatus, rule_statuses
from screens.trend_data import TrendData, load_trends
from storage import breaker_repo, identity_repo

RECENT_EVENTS = 50


@dataclass(frozen=True)
class LiveData:
    at: datetime
    status: dict[str, Any] | None = None
    rules: tuple[RuleStatus, ...] = ()
    unresolved: tuple[dict[str, Any], ...] = ()
    recent_ids: frozenset[str] = frozenset()      # newest breaker events, for noticing trips
    recent: tuple[dict[str, Any], ...] = ()
    pending: tuple[dict[str, Any], ...] | None = None   # None: proposals not available
    roles: frozenset[str] = frozenset()
    error: str | None = None                     # the store could not be read

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None


@dataclass(frozen=True)
class SlowData:
    at: datetime
    readiness: dict[str, Any] | None = None
    trends: TrendData | None = None
    error: str | None = None


def load_live(gov: Governance, api: EngineApi, operator: str) -> LiveData:
    now = gov.clock.now()
    try:
        status = gov.status(with_readiness=False)
        with gov.store.read() as conn:
            rules = tuple(rule_statuses(conn, now))
            recent = tuple(event_json(r) for r in breaker_repo.list_events(conn, limit=RECENT_EVENTS))
            unresolved = tuple(event_json(r) for r in breaker_repo.list_events(conn, unresolved_only=True))
            roles = frozenset(identity_repo.roles_of(conn, operator))
        book = api.proposals
        pending = tuple(book.list(status="pending")) if book is not None else None
    except Exception as exc:  # StoreUnavailable above all; the console keeps running either way
        return LiveData(now, error=describe_error(exc))
    return LiveData(now, status, rules, unresolved, frozenset(e["id"] for e in recent), recent, pending, roles)


def load_slow(gov: Governance) -> SlowData:
    now = gov.clock.now()
    try:
        report = gov.readiness.assess()
        readiness = report.to_json()
        with gov.store.read() as conn:
            trend = load_trends(conn, now, current_score=report.score)
    except Exception as exc:
        return SlowData(now, error=describe_error(exc))
    return SlowData(now, readiness, trend)
