"""Backtest: replay a rule (or a draft condition and window) over stored history.

History is aggregated in SQL into buckets of ``step`` (a fifth of the window, at least one minute), only
as finely as the condition reads (per command type only for ``commandType.*``, the autonomous counts only
for ``autonomous.*``); the window is then slid one step at a time over the buckets, their sums kept as
they enter and leave it. A trip is counted where the condition becomes true after being false (as if
each event had been resolved once the condition cleared). Approximation, stated in the result: a command
whose events span two steps counts once per step in ``total``; per-status counts are exact.
``commandType.consecutiveFailures`` is replayed from the outcome events' own times (not buckets), streamed
in time order: in each window, the type's failures after its last success in it.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain, groupby
from operator import itemgetter
from typing import Any

from engine.breakers import CONSECUTIVE, WindowScope, _counts_values
from engine.clock import Clock, aware_utc, isoformat
from engine.domain import safety_totals
from engine.metrics import CommandCounts
from engine.rule_language import Condition, parse_condition, parse_window
from storage import backtest_repo, events_repo
from storage.read_ahead import read_ahead
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


#: per-type answers kept by one backtest before they are forgotten (memory stays bounded)
VERDICTS_KEPT = 50_000

#: (the whole window's values, a type's counts, its consecutive failures) -> what it observed, or None
Verdicts = dict[tuple[Any, ...], dict[str, Any] | None]


def _add(into: list[int], counts: Sequence[int], sign: int) -> None:
    for i, n in enumerate(counts):
        into[i] += sign * n


@dataclass(frozen=True)
class _Reads:
    """What a condition reads, so that the replay fetches and sums nothing else."""

    everything: bool
    autonomous: bool
    types: bool
    incidents: bool
    safety: bool

    @classmethod
    def of(cls, condition: Condition) -> _Reads:
        names = condition.names
        return cls(everything=any("." not in n for n in names),
                   autonomous=any(n.startswith("autonomous.") for n in names),
                   types=condition.uses_command_type(),
                   incidents=condition.uses_incident_severity() or any(n.startswith("incidents.") for n in names),
                   safety=any(n.startswith("safety.") for n in names))


class _WindowSums:
    """The counts (backtest_repo.FIELDS order) of the buckets in the current window, kept as buckets enter
    and leave it: over every command, the autonomous ones, and per command type (a type is present while
    it has a command in the window)."""

    def __init__(self) -> None:
        self.everything = [0] * len(backtest_repo.FIELDS)
        self.autonomous = [0] * len(backtest_repo.FIELDS)
        self.types: dict[str, list[int]] = {}

    def apply(self, rows: Sequence[backtest_repo.Bucket], sign: int) -> None:
        for _, ctype, counts, auto in rows:
            _add(self.everything, counts, sign)
            if auto is not None:
                _add(self.autonomous, auto, sign)
            if ctype:
                per_type = self.types.setdefault(ctype, [0] * len(counts))
                _add(per_type, counts, sign)
                if per_type[0] == 0:  # no command of the type left in the window
                    del self.types[ctype]


def _counts(sums: Sequence[int]) -> CommandCounts:
    return CommandCounts(*sums)  # FIELDS and CommandCounts' fields are in the same order


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
        reads = _Reads.of(condition)
        with self.store.read() as conn:
            incidents = events_repo.incidents_between(conn, start - window, end + self.nearby)
            safety = events_repo.safety_between(conn, start - window, until)
            # streamed too: the replay holds only the outcomes its current window needs
            outcomes = _Outcomes(backtest_repo.stream_outcome_times(conn, start - window, until)) \
                if CONSECUTIVE in condition.names else None
            # the bucket counts are read on a connection of their own, a few days ahead of the replay; closed
            # (the reader stopped, its transaction ended) however the replay ends
            with closing(read_ahead(self.store, lambda c: backtest_repo.bucket_count_chunks(
                    c, start - window, until, step_s, by_type=reads.types, autonomous=reads.autonomous),
                    name="backtest-read-ahead")) as chunks:
                return self._replay(condition, reads, window_text, window, start, end, step,
                                    chain.from_iterable(chunks), incidents, safety, min_samples, outcomes)

    def _replay(self, condition: Condition, reads: _Reads, window_text: str, window: timedelta, start: datetime,
                end: datetime, step: timedelta, rows: Iterable[backtest_repo.Bucket], incidents: Sequence[Any],
                safety: Sequence[Any], min_samples: int, outcomes: _Outcomes | None = None) -> BacktestResult:
        """Slide the window over ``rows`` (backtest_repo.bucket_count_chunks' rows), ordered by bucket: only the
        buckets of the current window are held (a deque) and their sums kept as they enter and leave, so a
        step costs the buckets that changed, whatever the history's length. A window whose inputs did not
        change since the last step keeps the last step's answer."""
        step_s = int(step.total_seconds())
        k = max(1, round(window / step))
        inc_by_bucket: dict[int, list[Any]] = defaultdict(list)
        if reads.incidents:
            for inc in incidents:
                inc_by_bucket[_epoch(inc.at) // step_s * step_s].append(inc)
        saf_by_bucket: dict[int, dict[str, int]] = defaultdict(_empty)
        if reads.safety:
            for s in safety:
                saf_by_bucket[_epoch(s.at) // step_s * step_s][s.type] += 1
        buckets = ((b, list(group)) for b, group in groupby(rows, key=itemgetter(0)))
        pending = next(buckets, None)
        held: deque[tuple[int, list[backtest_repo.Bucket]]] = deque()  # the window's buckets, oldest first
        sums = _WindowSums()

        first = _epoch(start) // step_s * step_s + step_s
        last = _epoch(end) // step_s * step_s + step_s  # the last window holds the current step
        # every window of the range is judged (no cap on points: the range reported is the range covered)
        points = (last - first) // step_s + 1
        trips: list[BacktestTrip] = []
        now_true: dict[str | None, dict[str, Any]] = {}
        was_true: set[str | None] = set()
        consecutive: dict[str, int] | None = None
        verdicts: Verdicts = {}
        for i in range(points):
            t_end = first + i * step_s  # the window covers the k buckets before t_end
            lo = t_end - k * step_s
            changed = i == 0
            while pending is not None and pending[0] < t_end:
                if pending[0] >= lo:
                    held.append(pending)
                    sums.apply(pending[1], 1)
                    changed = True
                pending = next(buckets, None)
            while held and held[0][0] < lo:
                sums.apply(held.popleft()[1], -1)
                changed = True
            # an incident or safety event enters with its bucket and leaves k steps later
            for edge in (t_end - step_s, lo - step_s):
                changed = changed or edge in inc_by_bucket or edge in saf_by_bucket
            when = datetime.fromtimestamp(t_end, tz=UTC)
            if outcomes is not None:
                now = outcomes.window(datetime.fromtimestamp(lo, tz=UTC), when)
                changed = changed or now != consecutive
                consecutive = now
            if changed:
                keys = range(lo, t_end, step_s)
                window_incidents = [inc for key in keys for inc in inc_by_bucket.get(key, ())]
                window_safety = _empty()
                for key in keys:
                    for name, n in saf_by_bucket.get(key, {}).items():
                        window_safety[name] += n
                now_true = self._judge(condition, reads, sums, window_incidents, window_safety, min_samples,
                                       consecutive, verdicts)
            for scope, observed in now_true.items():
                if scope not in was_true:
                    trips.append(BacktestTrip(when, scope, observed, self._nearby(incidents, when)))
            was_true = set(now_true)
        return BacktestResult(condition.text, window_text, start, end, step, points, trips)

    def _judge(self, condition: Condition, reads: _Reads, sums: _WindowSums, incidents: Sequence[Any],
               safety: dict[str, int], min_samples: int, consecutive: dict[str, int] | None = None,
               verdicts: Verdicts | None = None) -> dict[str | None, dict[str, Any]]:
        """The scopes (None: the whole window; else a command type) where the condition holds, each with
        the values of the names it reads. ``verdicts`` keeps the per-type answers of earlier windows."""
        values: dict[str, Any] = {}
        if reads.everything:
            values.update(_counts_values("", _counts(sums.everything), min_samples))
        if reads.autonomous:
            values.update(_counts_values("autonomous.", _counts(sums.autonomous), min_samples))
        if reads.incidents:
            values.update({"incidents.total": len(incidents),
                           "incidents.critical": sum(1 for i in incidents if i.severity == "critical"),
                           "incidents.fromAutonomousActions": sum(1 for i in incidents if i.autonomous)})
        if reads.safety:
            values.update(safety_totals(safety, "safety."))
        severities = frozenset(i.severity for i in incidents)
        names = sorted(n for n in condition.names if n != "incident.severity")
        hits: dict[str | None, dict[str, Any]] = {}
        if not reads.types:
            scope = WindowScope(values, severities)
            if condition.evaluate(scope):
                hits[None] = {n: scope.value(n) for n in names}
            return hits
        # a type's answer depends only on its counts and what the whole window's values are: a window of
        # many types in a long history meets the same combinations again and again
        shared = (tuple(values.values()), severities)
        known: Verdicts = {} if verdicts is None else verdicts
        if len(known) > VERDICTS_KEPT:
            known.clear()
        for ctype in sorted(sums.types):
            counts = sums.types[ctype]
            failures = consecutive.get(ctype, 0) if consecutive is not None else None
            key = (shared, *counts, failures)
            if key not in known:
                scope = WindowScope({**values, **_counts_values("commandType.", _counts(counts), min_samples)},
                                    severities)
                if failures is not None:
                    scope.values[CONSECUTIVE] = failures
                known[key] = {n: scope.value(n) for n in names} if condition.evaluate(scope) else None
            observed = known[key]
            if observed is not None:
                hits[ctype] = dict(observed)
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
        self._pending = None if row is None else (row[0], row[1], aware_utc(row[2]))

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


def _epoch(when: datetime) -> int:
    return int(when.timestamp())
