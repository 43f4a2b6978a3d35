"""AutonomyMetrics (seed 000) over any period, computed by SQL aggregation in the store.

A rate whose denominator is zero is ``None`` (unknown), never 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from engine.clock import Clock, isoformat
from engine.domain import SAFETY_NAMES, safety_totals
from storage import events_repo, readiness_repo
from storage.store import Store

COUNT_NAMES = ("total", "proposed", "approved", "rejected", "succeeded", "failed", "rolledBack")


def ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


@dataclass(frozen=True)
class CommandCounts:
    total: int = 0
    proposed: int = 0
    approved: int = 0
    rejected: int = 0
    succeeded: int = 0
    failed: int = 0
    rolledBack: int = 0

    @classmethod
    def from_status_counts(cls, counts: dict[str, int]) -> CommandCounts:
        return cls(total=counts.get("total", 0), proposed=counts.get("proposed", 0),
                   approved=counts.get("approved", 0), rejected=counts.get("rejected", 0),
                   succeeded=counts.get("succeeded", 0), failed=counts.get("failed", 0),
                   rolledBack=counts.get("rolled_back", 0))

    def rates(self) -> dict[str, float | None]:
        return {
            "successRate": ratio(self.succeeded, self.succeeded + self.failed),
            "approvalRate": ratio(self.approved, self.proposed),
            "rollbackRate": ratio(self.rolledBack, self.succeeded),
            "errorRate": ratio(self.failed, self.total),
        }

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNT_NAMES}


@dataclass(frozen=True)
class AutonomyMetrics:
    start: datetime
    end: datetime
    commands: CommandCounts
    incidents: dict[str, int]
    safety: dict[str, int]
    autonomous: CommandCounts = field(default_factory=CommandCounts)

    @property
    def rates(self) -> dict[str, float | None]:
        return self.commands.rates()

    def to_json(self) -> dict[str, Any]:
        return {
            "period": {"start": isoformat(self.start), "end": isoformat(self.end)},
            "commands": self.commands.to_json(),
            "rates": self.rates,
            "incidents": {k: self.incidents.get(k, 0) for k in ("total", "critical", "fromAutonomousActions")},
            "safety": {k: self.safety.get(k, 0) for k in SAFETY_NAMES.values()},
            "autonomous": {"commands": self.autonomous.to_json(), "rates": self.autonomous.rates()},
        }


class MetricsCollector:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def collect(self, start: datetime, end: datetime | None = None) -> AutonomyMetrics:
        end = end or self.clock.now()
        with self.store.read() as conn:
            return collect_in(conn, start, end)

    def collect_since(self, period: timedelta) -> AutonomyMetrics:
        end = self.clock.now()
        return self.collect(end - period, end)

    def snapshot(self, period: timedelta = timedelta(hours=1)) -> AutonomyMetrics:
        """Store the metrics of the period ending now, for trend plots."""
        metrics = self.collect_since(period)
        rates = metrics.rates
        with self.store.write(serialise=False) as conn:
            readiness_repo.add_snapshot(
                conn, taken_at=metrics.end, period_start=metrics.start, period_end=metrics.end,
                total=metrics.commands.total, success_rate=rates["successRate"],
                approval_rate=rates["approvalRate"], rollback_rate=rates["rollbackRate"],
                error_rate=rates["errorRate"], data=metrics.to_json())
        return metrics


def collect_in(conn: Connection, start: datetime, end: datetime) -> AutonomyMetrics:
    if end <= start:
        raise ValueError("a metrics period must end after it starts")
    every, autonomous_only = events_repo.command_counts_split(conn, start, end)
    counts = CommandCounts.from_status_counts(every)
    autonomous = CommandCounts.from_status_counts(autonomous_only)
    incidents = events_repo.incident_counts(conn, start, end)
    safety_raw = events_repo.safety_counts(conn, start, end)
    safety = safety_totals(safety_raw)
    return AutonomyMetrics(start, end, counts, incidents, safety, autonomous)
