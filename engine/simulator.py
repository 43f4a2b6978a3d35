"""Deterministic, realistic event traffic: months of history for demos and benchmarks, and a live agent.

Everything is drawn from a seeded ``random.Random`` and every time comes from the arguments, so the
same call gives the same events. The events are the contract's JSON objects (DESIGN.md, "Events in"),
timestamps ISO 8601 with a Z, and each stream is ordered by time. No I/O here.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from engine.domain import CommandStatus

COMMAND_TYPES: tuple[str, ...] = (
    "restart_service", "scale_deployment", "clear_cache", "rotate_logs",
    "renew_certificate", "drain_node", "rollback_deploy", "failover_database",
)
SEVERITY_WEIGHTS = {"low": 0.55, "medium": 0.33, "high": 0.11, "critical": 0.01}
SAFETY_WEIGHTS = {"safety_gate_trigger": 0.6, "constraint_violation": 0.35, "emergency_abort": 0.05}
DAY = 86_400.0


def iso(when: datetime) -> str:
    """UTC with a Z and milliseconds: one width, so the strings sort as the times do."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class _Timeline:
    """Events scheduled out of order, released in time order (ties keep scheduling order)."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, dict]] = []
        self._seq = itertools.count()

    def add(self, at: datetime, event: dict) -> None:
        at += timedelta(microseconds=-at.microsecond % 1000)  # up to whole ms: the time iso() spells
        event["at"] = iso(at)
        heapq.heappush(self._heap, (at, next(self._seq), event))

    def due(self, until: datetime, *, inclusive: bool = True) -> Iterator[dict]:
        while self._heap and (self._heap[0][0] <= until if inclusive else self._heap[0][0] < until):
            yield heapq.heappop(self._heap)[2]


def _lifecycle(rng: random.Random, timeline: _Timeline, cid: str, ctype: str, at: datetime, *,
               autonomous: bool, failure_rate: float, rollback_rate: float, rejection_rate: float,
               review_seconds: tuple[float, float], run_seconds: tuple[float, float],
               force_failure: bool = False) -> None:
    """One command: proposed -> approved|rejected -> succeeded|failed -> maybe rolled_back."""
    def event(status: str, when: datetime) -> None:
        timeline.add(when, {"kind": "command", "id": cid, "type": ctype, "status": status,
                            "autonomous": autonomous})

    event(CommandStatus.PROPOSED, at)
    # the policy engine approves autonomous commands at once; humans take a while and sometimes refuse
    at += timedelta(seconds=rng.uniform(0.05, 0.5) if autonomous else rng.uniform(*review_seconds))
    if not autonomous and not force_failure and rng.random() < rejection_rate:
        event(CommandStatus.REJECTED, at)
        return
    event(CommandStatus.APPROVED, at)
    at += timedelta(seconds=rng.uniform(*run_seconds))
    if force_failure or rng.random() < failure_rate:
        event(CommandStatus.FAILED, at)
        return
    event(CommandStatus.SUCCEEDED, at)
    if rng.random() < rollback_rate:
        event(CommandStatus.ROLLED_BACK, at + timedelta(seconds=rng.uniform(60, 1800)))


def generate_history(start: datetime, end: datetime, *, commands_per_hour: float = 75.0,
                     command_types: tuple[str, ...] = COMMAND_TYPES, seed: int = 0,
                     autonomous_share: float = 0.3, failure_rate: float = 0.003,
                     rollback_rate: float = 0.01, rejection_rate: float = 0.05,
                     incident_rate: float = 1.5, safety_rate: float = 0.4,
                     eval_coverage: tuple[int, int] = (46, 50), id_prefix: str = "hist") -> Iterator[dict]:
    """Events with ``start <= at < end``, ordered by time.

    Commands arrive as a Poisson process (``commands_per_hour``); ``failure_rate`` is the share of
    executed commands that fail, ``rollback_rate`` of succeeded ones later rolled back,
    ``rejection_rate`` of human-reviewed ones rejected. ``incident_rate`` and ``safety_rate`` are per
    day; incidents are mostly low or medium, and a critical one always names a command. One
    eval_coverage event a day (covered drawn from ``eval_coverage[0]`` to ``eval_coverage[1]``).
    Commands still running at ``end`` are cut off there, as a real log would be.
    """
    if end <= start:
        raise ValueError("generate_history needs end after start")
    rng = random.Random(seed)
    timeline = _Timeline()
    recent: list[str] = []  # the last few commands, for incidents to name
    counters = {k: itertools.count(1) for k in ("cmd", "inc", "saf")}
    low, high = eval_coverage

    def gap(per_day: float) -> timedelta:
        return timedelta(seconds=rng.expovariate(per_day / DAY)) if per_day > 0 else end - start + timedelta(1)

    nxt = {"command": start + gap(commands_per_hour * 24), "incident": start + gap(incident_rate),
           "safety": start + gap(safety_rate),
           "eval": start.replace(hour=6, minute=0, second=0, microsecond=0)}
    if nxt["eval"] < start:
        nxt["eval"] += timedelta(days=1)
    while True:
        what, now = min(nxt.items(), key=lambda kv: kv[1])
        if now >= end:
            break
        yield from timeline.due(now)
        if what == "command":
            cid = f"{id_prefix}-cmd-{next(counters['cmd'])}"
            recent = (recent + [cid])[-20:]
            _lifecycle(rng, timeline, cid, rng.choice(command_types), now,
                       autonomous=rng.random() < autonomous_share, failure_rate=failure_rate,
                       rollback_rate=rollback_rate, rejection_rate=rejection_rate,
                       review_seconds=(20, 900), run_seconds=(2, 120))
            nxt["command"] = now + gap(commands_per_hour * 24)
        elif what == "incident":
            severity = _pick(rng, SEVERITY_WEIGHTS)
            incident = {"kind": "incident", "id": f"{id_prefix}-inc-{next(counters['inc'])}", "severity": severity}
            if recent and (severity == "critical" or rng.random() < 0.5):
                incident["command_id"] = rng.choice(recent)
            timeline.add(now, incident)
            nxt["incident"] = now + gap(incident_rate)
        elif what == "safety":
            timeline.add(now, {"kind": "safety", "id": f"{id_prefix}-saf-{next(counters['saf'])}",
                               "type": _pick(rng, SAFETY_WEIGHTS)})
            nxt["safety"] = now + gap(safety_rate)
        else:
            timeline.add(now, {"kind": "eval_coverage", "id": f"{id_prefix}-eval-{now:%Y-%m-%d}",
                               "covered": rng.randint(low, high), "total": high})
            nxt["eval"] = now + timedelta(days=1)
    yield from timeline.due(end, inclusive=False)


class AgentSimulator:
    """A live agent for the demo: about ``commands_per_second`` commands, mostly autonomous.

    Call ``next_events(now)`` repeatedly with a non-decreasing ``now``; it returns the events that
    became due since the previous call. ``script_failure_burst`` makes the scripted incident.
    """

    def __init__(self, *, seed: int = 0, commands_per_second: float = 1.0,
                 command_types: tuple[str, ...] = COMMAND_TYPES, autonomous_share: float = 0.7,
                 failure_rate: float = 0.002, rollback_rate: float = 0.005, rejection_rate: float = 0.03,
                 incidents_per_hour: float = 2.0, id_prefix: str = "live") -> None:
        self.rng = random.Random(seed)
        self.rate = commands_per_second
        self.command_types = command_types
        self.autonomous_share = autonomous_share
        self.outcomes = {"failure_rate": failure_rate, "rollback_rate": rollback_rate,
                         "rejection_rate": rejection_rate}
        self.incidents_per_hour = incidents_per_hour
        self.id_prefix = id_prefix
        self.timeline = _Timeline()
        self.bursts: list[tuple[datetime, str, int]] = []
        self.cursor: datetime | None = None
        self.next_command: datetime | None = None
        self.next_incident: datetime | None = None
        self.counters = {k: itertools.count(1) for k in ("cmd", "inc")}
        self.recent: list[str] = []

    def script_failure_burst(self, at: datetime, command_type: str, n: int = 25) -> None:
        """At ``at``: ``n`` failed autonomous commands of ``command_type`` within ~``n/2`` seconds,
        then a critical incident naming the last of them.

        Against the default breakers at one command a second (~300 in 5 minutes) this trips
        'errorRate > 0.05' over 5m when n >= 16, 'commandType.failures >= 3' when n >= 3, and
        'incident.severity === "critical"' over 1m.
        """
        if n < 1:
            raise ValueError("a failure burst needs n >= 1")
        self.bursts.append((at, command_type, n))

    def next_events(self, now: datetime) -> list[dict]:
        cursor, next_command, next_incident = self.cursor, self.next_command, self.next_incident
        if cursor is None or next_command is None or next_incident is None:  # first call: start one second ago
            cursor = self.cursor = now - timedelta(seconds=1)
            next_command = self.next_command = cursor + self._gap(self.rate)
            next_incident = self.next_incident = cursor + self._gap(self.incidents_per_hour / 3600)
        if now < cursor:
            raise ValueError(f"next_events: now {iso(now)} is before the previous call {iso(cursor)}")
        while next_command <= now:
            self._command(next_command)
            next_command = self.next_command = next_command + self._gap(self.rate)
        while next_incident <= now:
            self._incident(next_incident, self.rng.choice(["low", "low", "medium"]))
            next_incident = self.next_incident = next_incident + self._gap(self.incidents_per_hour / 3600)
        for burst in [b for b in self.bursts if b[0] <= now]:
            self.bursts.remove(burst)
            self._burst(*burst)
        self.cursor = now
        return list(self.timeline.due(now))

    def _gap(self, per_second: float) -> timedelta:
        return timedelta(seconds=self.rng.expovariate(per_second)) if per_second > 0 else timedelta(days=36500)

    def _command(self, at: datetime, *, ctype: str | None = None, fail: bool = False) -> str:
        cid = f"{self.id_prefix}-cmd-{next(self.counters['cmd'])}"
        self.recent = (self.recent + [cid])[-20:]
        _lifecycle(self.rng, self.timeline, cid, ctype or self.rng.choice(self.command_types), at,
                   autonomous=fail or self.rng.random() < self.autonomous_share, **self.outcomes,
                   review_seconds=(3, 30), run_seconds=(0.5, 4), force_failure=fail)
        return cid

    def _incident(self, at: datetime, severity: str, command_id: str | None = None) -> None:
        incident = {"kind": "incident", "id": f"{self.id_prefix}-inc-{next(self.counters['inc'])}",
                    "severity": severity}
        if command_id or (self.recent and self.rng.random() < 0.5):
            incident["command_id"] = command_id or self.rng.choice(self.recent)
        self.timeline.add(at, incident)

    def _burst(self, at: datetime, ctype: str, n: int) -> None:
        cid = ""
        for i in range(n):
            cid = self._command(at + timedelta(seconds=i * 0.5), ctype=ctype, fail=True)
        # the failed commands end within ~n/2 + 5 s; the outage they caused is reported after them
        self._incident(at + timedelta(seconds=n * 0.5 + 6), "critical", cid)
