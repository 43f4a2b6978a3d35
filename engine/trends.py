"""Trends over stored metrics snapshots (seed 002's predictive detection): EMA, linear slope, z-score,
and the predicted time at which a rate crosses a breaker threshold, so operators hear of it first."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from engine.clock import isoformat
from engine.metrics import CommandCounts
from engine.readiness import READY_THRESHOLD
from engine.rule_language import And, Compare, Literal, Name, Node, Or, parse_condition
from storage import breaker_repo, events_repo, readiness_repo


@dataclass(frozen=True)
class Trend:
    metric: str
    points: int
    latest: float | None
    ema: float | None
    slope_per_hour: float | None
    zscore: float | None

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "points": self.points, "latest": self.latest, "ema": self.ema,
                "slopePerHour": self.slope_per_hour, "zScore": self.zscore}


def ema(values: Sequence[float], alpha: float = 0.3) -> float | None:
    if not values:
        return None
    acc = values[0]
    for v in values[1:]:
        acc = alpha * v + (1 - alpha) * acc
    return acc


def linear_slope(times: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope (value per unit of ``times``); None for fewer than 2 distinct times."""
    n = len(times)
    if n < 2:
        return None
    mt, mv = sum(times) / n, sum(values) / n
    den = sum((t - mt) ** 2 for t in times)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=False)) / den


def zscore(values: Sequence[float]) -> float | None:
    """How far the latest value stands from the mean of the ones before it, in standard deviations."""
    if len(values) < 3:
        return None
    history = values[:-1]
    mean = sum(history) / len(history)
    sd = math.sqrt(sum((v - mean) ** 2 for v in history) / (len(history) - 1))
    if sd == 0:
        return None
    return (values[-1] - mean) / sd


def trend(metric: str, series: Sequence[tuple[datetime, float | None]], *, alpha: float = 0.3) -> Trend:
    known = [(t, v) for t, v in series if v is not None]
    if not known:
        return Trend(metric, 0, None, None, None, None)
    t0 = known[0][0]
    hours = [(t - t0).total_seconds() / 3600 for t, _ in known]
    values = [v for _, v in known]
    return Trend(metric, len(values), values[-1], ema(values, alpha), linear_slope(hours, values), zscore(values))


@dataclass(frozen=True)
class Threshold:
    rule: str
    metric: str
    op: str
    value: float


def thresholds(rules: Sequence[Any]) -> list[Threshold]:
    """Simple `rate > X` style comparisons in enabled rules (what a trend can be projected onto)."""
    out = []
    for rule in rules:
        try:
            cond = parse_condition(rule["condition"] if isinstance(rule, dict) else rule.condition)
        except Exception:
            continue
        name = rule["name"] if isinstance(rule, dict) else rule.name
        for node in _comparisons(cond.ast):
            if isinstance(node.left, Name) and isinstance(node.right, Literal) and node.op in (">", ">=", "<", "<=") \
                    and "." not in node.left.name and isinstance(node.right.value, (int, float)) \
                    and not isinstance(node.right.value, bool):
                out.append(Threshold(name, node.left.name, node.op, float(node.right.value)))
    return out


def _comparisons(node: Node) -> Iterator[Compare]:
    """The comparisons joined by and/or (one under `not` draws no threshold line)."""
    if isinstance(node, Compare):
        yield node
    elif isinstance(node, (And, Or)):
        for sub in node.operands:
            yield from _comparisons(sub)


@dataclass(frozen=True)
class Prediction:
    threshold: Threshold
    trend: Trend
    crossing_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.threshold.rule, "metric": self.threshold.metric, "op": self.threshold.op,
                "threshold": self.threshold.value, "latest": self.trend.latest,
                "slopePerHour": self.trend.slope_per_hour, "zScore": self.trend.zscore,
                "predictedCrossing": isoformat(self.crossing_at)}


def predict_crossing(t: Trend, th: Threshold, now: datetime, horizon: timedelta) -> Prediction | None:
    """When the linear trend reaches the threshold, if that is within the horizon and not yet crossed."""
    if t.latest is None or not t.slope_per_hour or t.points < 3:
        return None
    rising = th.op in (">", ">=")
    gap = th.value - t.latest
    if (rising and (gap <= 0 or t.slope_per_hour <= 0)) or (not rising and (gap >= 0 or t.slope_per_hour >= 0)):
        return None  # crossed already (the breaker's job) or moving away
    hours = gap / t.slope_per_hour
    when = now + timedelta(hours=hours)
    return Prediction(th, t, when) if when - now <= horizon else None


def rate_series(snapshots: Sequence[Any], metric: str) -> list[tuple[datetime, float | None]]:
    column = {"successRate": "success_rate", "errorRate": "error_rate", "rollbackRate": "rollback_rate",
              "approvalRate": "approval_rate"}[metric]
    return [(s.taken_at.astimezone(UTC), getattr(s, column)) for s in snapshots]


def predictions(snapshots: Sequence[Any], rules: Sequence[Any], now: datetime, *,
                horizon: timedelta = timedelta(hours=12)) -> list[Prediction]:
    out = []
    for th in thresholds(rules):
        if th.metric not in ("successRate", "errorRate", "rollbackRate", "approvalRate"):
            continue
        p = predict_crossing(trend(th.metric, rate_series(snapshots, th.metric)), th, now, horizon)
        if p is not None:
            out.append(p)
    return out


# --- the console's trend series (the dashboard's plots) ------------------------------------------------

RATE_SPAN = timedelta(hours=48)
RATE_STEP = timedelta(hours=1)
READINESS_SPAN = timedelta(days=180)


@dataclass(frozen=True)
class TrendData:
    """Hourly rates and volume over the last 48 hours, readiness over the last 180 days, and what the
    trends predict: the series the dashboard plots, computed here so screens only draw them."""

    now: datetime
    hours: tuple[float, ...] = ()              # bucket index, hours before the current one (<= 0)
    success: tuple[float | None, ...] = ()     # percent (successRate of the contract), None: no commands
    error: tuple[float | None, ...] = ()       # percent (errorRate: failed / distinct commands)
    volume: tuple[int, ...] = ()               # distinct commands active per bucket
    readiness_days: tuple[float, ...] = ()     # days before now (negative)
    readiness: tuple[float, ...] = ()          # percent
    rate_warnings: tuple[str, ...] = ()
    readiness_note: str = ""
    readiness_crossing_days: float | None = None


def hourly_counts(conn: Connection, now: datetime) -> list[tuple[datetime, CommandCounts]]:
    """CommandCounts per hourly bucket over RATE_SPAN (every bucket, empty ones too): the status events
    of each bucket, with the contract's total (distinct commands active in it)."""
    start = now - RATE_SPAN
    step = int(RATE_STEP.total_seconds())  # an hour: the buckets are the hourly rollups' hours
    per = events_repo.hourly_command_counts(conn, start, now)
    first = int(start.timestamp()) // step * step
    return [(datetime.fromtimestamp(b, UTC), CommandCounts.from_status_counts(per.get(b, {})))
            for b in range(first, int(now.timestamp()) + 1, step)]


def load_trends(conn: Connection, now: datetime, *, current_score: float | None = None) -> TrendData:
    hours, success, error, volume, snaps = [], [], [], [], []
    buckets = hourly_counts(conn, now)
    for i, (at, counts) in enumerate(buckets):
        rates = counts.rates()
        s, e = rates["successRate"], rates["errorRate"]
        hours.append(float(i - (len(buckets) - 1)))  # whole buckets before now's: a stable x
        success.append(None if s is None else s * 100)
        error.append(None if e is None else e * 100)
        volume.append(counts.total)
        snaps.append(_Snapshot(at, s, e, rates["rollbackRate"], rates["approvalRate"]))
    rules = breaker_repo.list_rules(conn, enabled_only=True)
    warnings = tuple(f"{p.threshold.metric} heading for {p.threshold.op} {p.threshold.value:g} "
                     f"({p.threshold.rule}) around {p.crossing_at:%m-%d %H:%M}"
                     for p in predictions(snaps[:-1] or snaps, rules, now))
    points = [(a.taken_at.astimezone(UTC), a.score)
              for a in readiness_repo.assessments(conn, now - READINESS_SPAN)]
    if current_score is not None:
        points.append((now, current_score))  # the assessment just made, so the line ends at now
    r_days = tuple(round((t - now).total_seconds() / 86400, 1) for t, _ in points)
    r_vals = tuple(s * 100 for _, s in points)
    note, crossing = readiness_prediction(points, now)
    return TrendData(now, tuple(hours), tuple(success), tuple(error), tuple(volume), r_days, r_vals,
                     warnings, note, crossing)


@dataclass(frozen=True)
class _Snapshot:  # what rate_series reads of a stored metrics snapshot
    taken_at: datetime
    success_rate: float | None
    error_rate: float | None
    rollback_rate: float | None
    approval_rate: float | None


def readiness_prediction(points: list[tuple[datetime, float]], now: datetime) -> tuple[str, float | None]:
    """A sentence, and the days from now at which the linear trend reaches 95% (None if it does not)."""
    if not points:
        return "no readiness history yet (the governance cycle records one each run)", None
    latest = points[-1][1]
    if latest >= READY_THRESHOLD:
        return f"at {latest:.0%}: above the {READY_THRESHOLD:.0%} a proposal needs", None
    recent = points[-12:]
    days = [(t - now).total_seconds() / 86400 for t, _ in recent]
    slope = linear_slope(days, [s for _, s in recent])
    if not slope or slope <= 0:
        return f"at {latest:.0%}, not rising: no crossing of {READY_THRESHOLD:.0%} predicted", None
    n = len(recent)
    mean_d, mean_s = sum(days) / n, sum(s for _, s in recent) / n
    at_days = max(mean_d + (READY_THRESHOLD - mean_s) / slope, 0.0)
    when = now + timedelta(days=at_days)
    return f"at {latest:.0%}, predicted to reach {READY_THRESHOLD:.0%} around {when:%Y-%m-%d}", at_days
