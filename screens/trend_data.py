"""Series for the dashboard's trend plots, read in a worker thread.

Rates and volume come from the stored command events in hourly buckets (always there, even before the
scheduler has taken a metrics snapshot); readiness from the recorded assessments. Predicted crossings
use engine.trends: a rate's linear trend against the breakers' thresholds, and readiness against the
95% that a proposal needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy.engine import Connection

from engine import trends
from engine.readiness import READY_THRESHOLD
from storage import breaker_repo, events_repo, readiness_repo

RATE_SPAN = timedelta(hours=48)
RATE_STEP = timedelta(hours=1)
READINESS_SPAN = timedelta(days=180)


@dataclass(frozen=True)
class TrendData:
    now: datetime
    hours: tuple[float, ...] = ()              # bucket index, hours before the current one (<= 0)
    success: tuple[float | None, ...] = ()     # percent
    error: tuple[float | None, ...] = ()       # percent
    volume: tuple[int, ...] = ()               # commands finished per bucket
    readiness_days: tuple[float, ...] = ()     # days before now (negative)
    readiness: tuple[float, ...] = ()          # percent
    rate_warnings: tuple[str, ...] = ()
    readiness_note: str = ""
    readiness_crossing_days: float | None = None


def _rate_buckets(conn: Connection, now: datetime):
    start = now - RATE_SPAN
    step = int(RATE_STEP.total_seconds())
    rows = events_repo.bucketed_commands(conn, start, now, step)
    per: dict[int, dict[str, int]] = {}
    for bucket, _ctype, _auto, status, n in rows:
        counts = per.setdefault(bucket // step * step, {})  # floored here too: the SQL may not floor
        counts[status] = counts.get(status, 0) + n
    first = int(start.timestamp()) // step * step
    buckets = list(range(first, int(now.timestamp()) + 1, step))
    return [(b, per.get(b, {})) for b in buckets]


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def load_trends(conn: Connection, now: datetime, *, current_score: float | None = None) -> TrendData:
    hours, success, error, volume, snaps = [], [], [], [], []
    for bucket, c in _rate_buckets(conn, now):
        succeeded, failed = c.get("succeeded", 0), c.get("failed", 0)
        finished = succeeded + failed + c.get("rejected", 0)
        total = max(c.get("proposed", 0), finished)
        s, e = _ratio(succeeded, succeeded + failed), _ratio(failed, total)
        at = datetime.fromtimestamp(bucket, UTC)
        hours.append(float(len(hours) - RATE_SPAN // RATE_STEP))  # whole buckets before now's: stable x
        success.append(None if s is None else s * 100)
        error.append(None if e is None else e * 100)
        volume.append(finished)
        snaps.append(SimpleNamespace(taken_at=at, success_rate=s, error_rate=e,
                                     rollback_rate=_ratio(c.get("rolled_back", 0), succeeded),
                                     approval_rate=_ratio(c.get("approved", 0), c.get("proposed", 0))))
    rules = [r for r in breaker_repo.list_rules(conn, enabled_only=True)]
    warnings = tuple(f"{p.threshold.metric} heading for {p.threshold.op} {p.threshold.value:g} "
                     f"({p.threshold.rule}) around {p.crossing_at:%m-%d %H:%M}"
                     for p in trends.predictions(snaps[:-1] or snaps, rules, now))
    points = [(a.taken_at.astimezone(UTC), a.score)
              for a in readiness_repo.assessments(conn, now - READINESS_SPAN)]
    if current_score is not None:
        points.append((now, current_score))  # the assessment just made, so the line ends at now
    r_days = tuple(round((t - now).total_seconds() / 86400, 1) for t, _ in points)
    r_vals = tuple(s * 100 for _, s in points)
    note, crossing = readiness_prediction(points, now)
    return TrendData(now, tuple(hours), tuple(success), tuple(error), tuple(volume), r_days, r_vals,
                     warnings, note, crossing)


def readiness_prediction(points: list[tuple[datetime, float]], now: datetime) -> tuple[str, float | None]:
    """A sentence, and the days from now at which the linear trend reaches 95% (None if it does not)."""
    if not points:
        return "no readiness history yet (the governance cycle records one each run)", None
    latest = points[-1][1]
    if latest >= READY_THRESHOLD:
        return f"at {latest:.0%}: above the {READY_THRESHOLD:.0%} a proposal needs", None
    recent = points[-12:]
    days = [(t - now).total_seconds() / 86400 for t, _ in recent]
    slope = trends.linear_slope(days, [s for _, s in recent])
    if not slope or slope <= 0:
        return f"at {latest:.0%}, not rising: no crossing of {READY_THRESHOLD:.0%} predicted", None
    n = len(recent)
    mean_d, mean_s = sum(days) / n, sum(s for _, s in recent) / n
    at_days = mean_d + (READY_THRESHOLD - mean_s) / slope
    at_days = max(at_days, 0.0)
    when = now + timedelta(days=at_days)
    return f"at {latest:.0%}, predicted to reach {READY_THRESHOLD:.0%} around {when:%Y-%m-%d}", at_days
