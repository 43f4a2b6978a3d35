"""The backtest as it was before it streamed (issue 16 pt 3), kept verbatim as the reference the streamed
replay must equal (its result types are the engine's): it reads the whole history's buckets into memory,
then slides the window over them."""
# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.backtest import STATUS_KEYS, BacktestResult, BacktestTrip, _empty
from engine.breakers import CONSECUTIVE, WindowScope, _counts_values
from engine.clock import Clock, isoformat
from engine.domain import safety_totals
from engine.metrics import CommandCounts
from engine.rule_language import Condition, parse_condition, parse_window
import sqlalchemy as sa

from storage import events_repo
from storage.tables import command_events as CMD
from storage.store import Store


class Backtester:
    def __init__(self, store: Store, clock: Clock, *, nearby: timedelta = timedelta(minutes=30)) -> None:
        self.store = store
        self.clock = clock
        self.nearby = nearby

    def run(self, condition_text: str, window_text: str, *, days: int = 30,
            min_samples: int = 10) -> BacktestResult:
        condition = parse_condition(condition_text)
        window = parse_window(window_text)
        end = self.clock.now()
        start = end - timedelta(days=days)
        step = max(window / 5, timedelta(minutes=1))
        step_s = int(step.total_seconds())
        until = end + step  # through the step holding now, as live evaluation counts events at now
        with self.store.read() as conn:
            statuses = _bucketed_commands(conn, start - window, until, step_s)
            totals = _bucketed_command_totals(conn, start - window, until, step_s)
            incidents = events_repo.incidents_between(conn, start - window, end + self.nearby)
            safety = events_repo.safety_between(conn, start - window, until)
            outcomes = _Outcomes(events_repo.outcome_times(conn, start - window, until)) \
                if CONSECUTIVE in condition.names else None
        return self._replay(condition, window_text, window, start, end, step, statuses, totals, incidents,
                            safety, min_samples, outcomes)

    def _replay(self, condition: Condition, window_text: str, window: timedelta, start: datetime, end: datetime,
                step: timedelta, statuses, totals, incidents, safety, min_samples: int,
                outcomes: _Outcomes | None = None) -> BacktestResult:
        step_s = int(step.total_seconds())
        k = max(1, round(window / step))
        # per bucket: {(type, autonomous): {status/total: n}}
        buckets: dict[int, dict[tuple[str, bool], dict[str, int]]] = defaultdict(lambda: defaultdict(_empty))
        for b, ctype, auto, status, n in statuses:
            buckets[b][(ctype, auto)][status] += n
        for b, ctype, auto, n in totals:
            buckets[b][(ctype, auto)]["total"] += n
        inc_by_bucket: dict[int, list] = defaultdict(list)
        for inc in incidents:
            inc_by_bucket[_epoch(inc.at) // step_s * step_s].append(inc)
        saf_by_bucket: dict[int, dict[str, int]] = defaultdict(_empty)
        for s in safety:
            saf_by_bucket[_epoch(s.at) // step_s * step_s][s.type] += 1

        first = _epoch(start) // step_s * step_s + step_s
        last = _epoch(end) // step_s * step_s + step_s  # the last window holds the current step
        # every window of the range is judged (no cap on points: the range reported is the range covered);
        # a window with no command, incident or safety bucket is judged once and the answer reused
        points = (last - first) // step_s + 1
        occupied = set(buckets) | set(inc_by_bucket) | set(saf_by_bucket)
        empty_answer: dict[str | None, dict] | None = None
        trips: list[BacktestTrip] = []
        was_true: set[str | None] = set()
        for i in range(points):
            t_end = first + i * step_s  # the window covers the k buckets before t_end
            keys = [t_end - (j + 1) * step_s for j in range(k)]
            if not any(key in occupied for key in keys):
                if empty_answer is None:
                    empty_answer = self._judge(condition, {}, [], _empty(), min_samples,
                                               {} if outcomes is not None else None)
                now_true = empty_answer
                when = datetime.fromtimestamp(t_end, tz=UTC)
                for scope, observed in now_true.items():
                    if scope not in was_true:
                        trips.append(BacktestTrip(when, scope, observed, self._nearby(incidents, when)))
                was_true = set(now_true)
                continue
            agg: dict[tuple[str, bool], dict[str, int]] = defaultdict(_empty)
            for key in keys:
                for scope_key, counts in buckets.get(key, {}).items():
                    for name, n in counts.items():
                        agg[scope_key][name] += n
            window_incidents = [inc for key in keys for inc in inc_by_bucket.get(key, [])]
            window_safety = _empty()
            for key in keys:
                for name, n in saf_by_bucket.get(key, {}).items():
                    window_safety[name] += n
            span = (datetime.fromtimestamp(t_end - k * step_s, tz=UTC), datetime.fromtimestamp(t_end, tz=UTC))
            now_true = self._judge(condition, agg, window_incidents, window_safety, min_samples,
                                   outcomes.window(*span) if outcomes is not None else None)
            when = datetime.fromtimestamp(t_end, tz=UTC)
            for scope, observed in now_true.items():
                if scope not in was_true:
                    trips.append(BacktestTrip(when, scope, observed,
                                              self._nearby(incidents, when)))
            was_true = set(now_true)
        return BacktestResult(condition.text, window_text, start, end, step, points, trips)

    def _judge(self, condition: Condition, agg, incidents, safety, min_samples,
               consecutive: dict[str, int] | None = None) -> dict[str | None, dict]:
        def counts_of(pairs) -> CommandCounts:
            merged = _empty()
            for c in pairs:
                for name, n in c.items():
                    merged[name] += n
            return CommandCounts.from_status_counts(merged)

        everything = counts_of(agg.values())
        autonomous = counts_of(c for (t, a), c in agg.items() if a)
        values = {**_counts_values("", everything, min_samples),
                  **_counts_values("autonomous.", autonomous, min_samples),
                  "incidents.total": len(incidents),
                  "incidents.critical": sum(1 for i in incidents if i.severity == "critical"),
                  "incidents.fromAutonomousActions": sum(1 for i in incidents if i.autonomous),
                  **safety_totals(safety, "safety.")}
        severities = frozenset(i.severity for i in incidents)
        hits: dict[str | None, dict] = {}
        if not condition.uses_command_type():
            scope = WindowScope(values, severities)
            if condition.evaluate(scope):
                hits[None] = {n: scope.value(n) for n in sorted(condition.names) if n != "incident.severity"}
            return hits
        types = sorted({t for t, _ in agg})
        for ctype in types:
            per_type = counts_of(c for (t, _), c in agg.items() if t == ctype)
            scope = WindowScope({**values, **_counts_values("commandType.", per_type, min_samples)}, severities)
            if consecutive is not None:
                scope.values[CONSECUTIVE] = consecutive.get(ctype, 0)
            if condition.evaluate(scope):
                hits[ctype] = {n: scope.value(n) for n in sorted(condition.names) if n != "incident.severity"}
        return hits

    def _nearby(self, incidents, when: datetime) -> list[str]:
        return [f"{i.incident_id} ({i.severity})" for i in incidents
                if abs(i.at - when) <= self.nearby]


class _Outcomes:
    """Outcome times per type, for the consecutive failures of any window in O(log n)."""

    def __init__(self, rows: list[tuple[str, str, datetime]]) -> None:
        self.ok: dict[str, list[datetime]] = defaultdict(list)
        self.bad: dict[str, list[datetime]] = defaultdict(list)
        for ctype, status, at in rows:  # by at
            (self.ok if status == "succeeded" else self.bad)[ctype].append(_aware(at))

    def window(self, start: datetime, end: datetime) -> dict[str, int]:
        out = {}
        for ctype, bad in self.bad.items():
            ok = self.ok.get(ctype, [])
            i = bisect.bisect_left(ok, end)  # successes before end; the last of them, if in the window
            last_ok = ok[i - 1] if i and ok[i - 1] >= start else None
            lo = bisect.bisect_right(bad, last_ok) if last_ok is not None else bisect.bisect_left(bad, start)
            n = bisect.bisect_left(bad, end) - lo
            if n > 0:
                out[ctype] = n
        return out


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _epoch(when: datetime) -> int:
    return int(when.timestamp())


# what storage/events_repo.py had for the backtest before it streamed (raw scans; the rollups gave the same)


def _bucketed_commands(conn, start, end, step_seconds):
    """(bucket, command_type, autonomous, status, events)."""
    b = events_repo._bucket(conn, CMD.c.at, step_seconds).label("b")
    rows = conn.execute(sa.select(b, CMD.c.command_type, CMD.c.autonomous, CMD.c.status, sa.func.count())
                        .where(events_repo._period(CMD.c.at, start, end))
                        .group_by(b, CMD.c.command_type, CMD.c.autonomous, CMD.c.status))
    return [(int(r[0]), r[1], bool(r[2]), r[3], r[4]) for r in rows]


def _bucketed_command_totals(conn, start, end, step_seconds):
    """(bucket, command_type, autonomous, distinct commands active in the bucket)."""
    b = events_repo._bucket(conn, CMD.c.at, step_seconds).label("b")
    rows = conn.execute(sa.select(b, CMD.c.command_type, CMD.c.autonomous,
                                  sa.func.count(sa.distinct(CMD.c.command_id)))
                        .where(events_repo._period(CMD.c.at, start, end)).group_by(b, CMD.c.command_type, CMD.c.autonomous))
    return [(int(r[0]), r[1], bool(r[2]), r[3]) for r in rows]
