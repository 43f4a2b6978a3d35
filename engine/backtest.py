"""Backtest: replay a rule (or a draft condition and window) over stored history.

History is aggregated in SQL into buckets of ``step`` (a fifth of the window, at least one minute);
the window is then slid one step at a time over the buckets. A trip is counted where the condition
becomes true after being false (as if each event had been resolved once the condition cleared).
Approximation, stated in the result: a command whose events span two steps counts once per step in
``total``; per-status counts are exact. ``commandType.consecutiveFailures`` is replayed from the outcome
events' own times (not buckets), streamed in time order: in each window, the type's failures after its
last success in it.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

from engine.breakers import CONSECUTIVE, WindowScope, _counts_values
from engine.clock import Clock, isoformat
from engine.domain import safety_totals
from engine.metrics import CommandCounts
from engine.rule_language import Condition, parse_condition, parse_window
from storage import backtest_repo, events_repo
from storage.store import Store

STATUS_KEYS = {"proposed": "proposed", "approved": "approved", "rejected": "rejected",
               "succeeded": "succeeded", "failed": "failed", "rolled_back": "rolled_back"}


@dataclass
class BacktestTrip:
    at: datetime
    command_type: str | None
    observed: dict[str, Any]
    incidents_nearby: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"at": isoformat(self.at), "commandType": self.command_type, "observed": self.observed,
                "incidentsNearby": self.incidents_nearby}


@dataclass
class BacktestResult:
    condition: str
    window: str
    start: datetime
    end: datetime
    step: timedelta
    points: int
    trips: list[BacktestTrip]

    def to_json(self) -> dict[str, Any]:
        with_incident = sum(1 for t in self.trips if t.incidents_nearby)
        return {"condition": self.condition, "window": self.window, "from": isoformat(self.start),
                "to": isoformat(self.end), "stepSeconds": int(self.step.total_seconds()),
                "windowsJudged": self.points, "trips": len(self.trips),
                "tripsWithIncidentNearby": with_incident,
                "tripsWithoutIncident": len(self.trips) - with_incident,
                "tripTimes": [t.to_json() for t in self.trips],
                "note": "total counts a command once per step it was active in; status counts are exact"}


def _empty() -> dict[str, int]:
    return defaultdict(int)


#: {(command type, autonomous): {status or "total": n}}
Counts = dict[tuple[str, bool], dict[str, int]]


def _buckets(rows: Iterable[tuple[int, str, bool, str, int]]) -> Iterator[tuple[int, Counts]]:
    """Group rows ordered by bucket into (bucket, counts), one bucket at a time."""
    for b, group in groupby(rows, key=itemgetter(0)):
        counts: Counts = defaultdict(_empty)
        for _, ctype, auto, name, n in group:
            counts[(ctype, auto)][name] += n
        yield b, counts


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
            incidents = events_repo.incidents_between(conn, start - window, end + self.nearby)
            safety = events_repo.safety_between(conn, start - window, until)
            # streamed too: the replay holds only the outcomes its current window needs
            outcomes = _Outcomes(backtest_repo.stream_outcome_times(conn, start - window, until)) \
                if CONSECUTIVE in condition.names else None
            # both streams are ordered by bucket: merged, they give each bucket's counts in turn
            rows = heapq.merge(backtest_repo.stream_bucketed_commands(conn, start - window, until, step_s),
                               backtest_repo.stream_bucketed_totals(conn, start - window, until, step_s),
                               key=itemgetter(0))
            return self._replay(condition, window_text, window, start, end, step, rows, incidents,
                                safety, min_samples, outcomes)

    def _replay(self, condition: Condition, window_text: str, window: timedelta, start: datetime, end: datetime,
                step: timedelta, rows: Iterable[tuple[int, str, bool, str, int]], incidents: Sequence[Any],
                safety: Sequence[Any], min_samples: int, outcomes: _Outcomes | None = None) -> BacktestResult:
        """Slide the window over ``rows`` (bucket, type, autonomous, status or "total", n), ordered by
        bucket: only the buckets of the current window are held (a deque), whatever the history's length."""
        step_s = int(step.total_seconds())
        k = max(1, round(window / step))
        inc_by_bucket: dict[int, list[Any]] = defaultdict(list)
        for inc in incidents:
            inc_by_bucket[_epoch(inc.at) // step_s * step_s].append(inc)
        saf_by_bucket: dict[int, dict[str, int]] = defaultdict(_empty)
        for s in safety:
            saf_by_bucket[_epoch(s.at) // step_s * step_s][s.type] += 1
        buckets = _buckets(rows)
        pending = next(buckets, None)
        held: deque[tuple[int, Counts]] = deque()  # the buckets of the current window, oldest first

        first = _epoch(start) // step_s * step_s + step_s
        last = _epoch(end) // step_s * step_s + step_s  # the last window holds the current step
        # every window of the range is judged (no cap on points: the range reported is the range covered);
        # a window with no command, incident or safety bucket is judged once and the answer reused
        points = (last - first) // step_s + 1
        empty_answer: dict[str | None, dict[str, Any]] | None = None
        trips: list[BacktestTrip] = []
        was_true: set[str | None] = set()
        for i in range(points):
            t_end = first + i * step_s  # the window covers the k buckets before t_end
            lo = t_end - k * step_s
            while pending is not None and pending[0] < t_end:
                if pending[0] >= lo:
                    held.append(pending)
                pending = next(buckets, None)
            while held and held[0][0] < lo:
                held.popleft()
            keys = [t_end - (j + 1) * step_s for j in range(k)]
            when = datetime.fromtimestamp(t_end, tz=UTC)
            if not held and not any(key in inc_by_bucket or key in saf_by_bucket for key in keys):
                if empty_answer is None:
                    empty_answer = self._judge(condition, {}, [], _empty(), min_samples,
                                               {} if outcomes is not None else None)
                now_true = empty_answer
            else:
                agg: Counts = defaultdict(_empty)
                for _, counts_by_scope in held:
                    for scope_key, counts in counts_by_scope.items():
                        for name, n in counts.items():
                            agg[scope_key][name] += n
                window_incidents = [inc for key in keys for inc in inc_by_bucket.get(key, [])]
                window_safety = _empty()
                for key in keys:
                    for name, n in saf_by_bucket.get(key, {}).items():
                        window_safety[name] += n
                span = (datetime.fromtimestamp(lo, tz=UTC), when)
                now_true = self._judge(condition, agg, window_incidents, window_safety, min_samples,
                                       outcomes.window(*span) if outcomes is not None else None)
            for scope, observed in now_true.items():
                if scope not in was_true:
                    trips.append(BacktestTrip(when, scope, observed, self._nearby(incidents, when)))
            was_true = set(now_true)
        return BacktestResult(condition.text, window_text, start, end, step, points, trips)

    def _judge(self, condition: Condition, agg: Counts, incidents: Sequence[Any], safety: dict[str, int],
               min_samples: int, consecutive: dict[str, int] | None = None) -> dict[str | None, dict[str, Any]]:
        def counts_of(pairs: Iterable[dict[str, int]]) -> CommandCounts:
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
        hits: dict[str | None, dict[str, Any]] = {}
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

    def _nearby(self, incidents: Sequence[Any], when: datetime) -> list[str]:
        return [f"{i.incident_id} ({i.severity})" for i in incidents
                if abs(i.at - when) <= self.nearby]


class _Outcomes:
    """The consecutive failures per type of windows that slide forward, from the outcome rows
    (type, status, at) ordered by at. Holds per type only the failures after its last success that are
    not older than the current window, and the time of that success: memory bounded by the window.

    Same answer as bisecting the whole range's outcome times (tests/integration/backtest_reference.py):
    for each type, the failures in [start, end) after the last success before ``end`` when that success
    is in the window, else all the failures in [start, end) (a failure at the success's very time does
    not count)."""

    def __init__(self, rows: Iterable[tuple[str, str, datetime]]) -> None:
        self._rows = iter(rows)
        self._pending: tuple[str, str, datetime] | None = None
        self._last_ok: dict[str, datetime] = {}
        self._bad: dict[str, deque[datetime]] = {}
        self._end: datetime | None = None
        self._next()

    def _next(self) -> None:
        row = next(self._rows, None)
        self._pending = None if row is None else (row[0], row[1], _aware(row[2]))

    def window(self, start: datetime, end: datetime) -> dict[str, int]:
        """The counts for [start, end); successive calls must not move ``start`` or ``end`` back."""
        if self._end is not None and end < self._end:
            raise ValueError("windows must slide forward")
        self._end = end
        while self._pending is not None and self._pending[2] < end:
            ctype, status, at = self._pending
            if status == "succeeded":
                # every failure held is at or before it: none counts in this or any later window
                self._last_ok[ctype] = at
                self._bad.pop(ctype, None)
            else:
                last_ok = self._last_ok.get(ctype)
                if last_ok is None or at > last_ok:
                    self._bad.setdefault(ctype, deque()).append(at)
            self._next()
        out = {}
        for ctype in list(self._bad):
            bad = self._bad[ctype]
            while bad and bad[0] < start:  # older than the window: never counts again
                bad.popleft()
            if bad:
                out[ctype] = len(bad)
            else:
                del self._bad[ctype]
        for ctype in [t for t, at in self._last_ok.items() if at < start]:
            del self._last_ok[ctype]  # only ever before the window from now on: no longer needed
        return out


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _epoch(when: datetime) -> int:
    return int(when.timestamp())
