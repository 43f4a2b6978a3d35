"""Trends over stored metrics snapshots (seed 002's predictive detection): EMA, linear slope, z-score,
and the predicted time at which a rate crosses a breaker threshold, so operators hear of it first."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.clock import isoformat
from engine.rule_language import And, Compare, Literal, Name, Or, parse_condition


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


def _comparisons(node):
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
