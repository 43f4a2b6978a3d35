"""Prometheus `/metrics` for `govcon serve` (prometheus-client, one registry per app).

Two kinds of series. This process's own counters and histograms (gate decisions, ingest requests and
events, their latencies, breaker evaluations) are updated as requests are served. The governance
state (phase, kill switch, unresolved events, breaker trips, readiness, command rates) is read from the
store when scraped — at most once per ``cache_seconds``, since a readiness assessment on a big store
takes a good part of a second. Names start with ``simcorp_governance_``, as the runbook greps for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.domain import PHASES, SEVERITIES
from engine.gate import MODES

PREFIX = "simcorp_governance_"
RATES_WINDOW = timedelta(hours=1)
log = logging.getLogger("govcon.serve.metrics")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GovernanceCollector(Collector):
    """Gauges read from the store at scrape time (cached)."""

    def __init__(self, gov, *, cache_seconds: float = 5.0) -> None:
        self.gov = gov
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, list[Metric]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # read only at scrape time: registering must not touch the store

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or self._cached[0] <= now:
                self._cached = (now + self.cache_seconds, self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily(PREFIX + "store_up", "1 when the store could be read at the last scrape")
        try:
            metrics = self._state_metrics()
        except Exception as exc:  # the store is down: say so, and serve the process's own series
            log.warning("metrics: cannot read the store: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *metrics]

    def _state_metrics(self) -> list[Metric]:
        gov = self.gov
        status = gov.status(with_readiness=False)
        phase = GaugeMetricFamily(PREFIX + "phase", "1 for the current autonomy phase, 0 for the others",
                                  labels=["phase"])
        for p in PHASES:
            phase.add_metric([p], 1 if p == status["currentPhase"] else 0)
        kill = GaugeMetricFamily(PREFIX + "kill_switch_engaged", "1 while the kill switch is engaged")
        kill.add_metric([], 1 if status["killSwitch"]["engaged"] else 0)
        shadow = GaugeMetricFamily(PREFIX + "breaker_shadow_mode", "1 while breakers run in shadow mode")
        shadow.add_metric([], 1 if status["breakerMode"] == "shadow" else 0)
        whitelist = GaugeMetricFamily(PREFIX + "whitelisted_command_types", "command types on the whitelist")
        whitelist.add_metric([], len(status["commandWhitelist"]))
        paused = GaugeMetricFamily(PREFIX + "paused_command_types", "command types paused by a breaker")
        paused.add_metric([], len(status["pausedCommandTypes"]))
        mode = GaugeMetricFamily(PREFIX + "mode", "1 for the current mode (normal, minimal, read_only), 0 for "
                                 "the others", labels=["mode"])
        for name in MODES:
            mode.add_metric([name], 1 if name == status.get("mode", "normal") else 0)
        grants = GaugeMetricFamily(PREFIX + "grants_in_flight", "grants of the gate without an outcome yet")
        grants.add_metric([], status.get("grantsInFlight", 0))
        requests = GaugeMetricFamily(PREFIX + "pending_action_requests", "action requests waiting for a human")
        requests.add_metric([], status.get("pendingRequests", 0))
        leader = GaugeMetricFamily(PREFIX + "scheduler_leader_alive", "1 while some scheduler holds the lease")
        leader.add_metric([], 1 if status["leader"] and status["leader"]["alive"] else 0)

        open_by_severity = Tally(e["severity"] for e in gov.breaker_events(unresolved_only=True) if not e["shadow"])
        unresolved = GaugeMetricFamily(PREFIX + "unresolved_breaker_events",
                                       "unresolved circuit-breaker events (enforced, not shadow)",
                                       labels=["severity"])
        for sev in SEVERITIES:
            unresolved.add_metric([sev], open_by_severity.get(sev, 0))

        trips = GaugeMetricFamily(PREFIX + "breaker_trips", "circuit-breaker trips recorded in the store, per rule",
                                  labels=["rule"])
        enabled = GaugeMetricFamily(PREFIX + "breaker_rule_enabled", "1 when the rule is enabled", labels=["rule"])
        rule_shadow = GaugeMetricFamily(PREFIX + "breaker_rule_shadow",
                                        "1 when the rule only records what it would have done", labels=["rule"])
        for rule in gov.rules.list():
            trips.add_metric([rule["name"]], rule["statistics"]["trips"])
            enabled.add_metric([rule["name"]], 1 if rule["enabled"] else 0)
            rule_shadow.add_metric([rule["name"]], 1 if rule["shadow"] else 0)

        report = gov.readiness.assess()
        readiness = GaugeMetricFamily(PREFIX + "readiness_score", "readiness score (0..1) per checklist category",
                                      labels=["category"])
        readiness.add_metric(["overall"], report.score)
        for category in report.results:
            readiness.add_metric([category], report.category_score(category))
        ready = GaugeMetricFamily(PREFIX + "ready_for_expansion", "1 when readiness allows proposing the next phase")
        ready.add_metric([], 1 if report.ready else 0)

        window = f"{int(RATES_WINDOW.total_seconds() // 3600)}h"
        m = gov.metrics.collect_since(RATES_WINDOW)
        commands = GaugeMetricFamily(PREFIX + "commands", "distinct commands per status over the window",
                                     labels=["status", "window"])
        for status_name, n in m.commands.to_json().items():
            commands.add_metric([status_name, window], n)
        rates = GaugeMetricFamily(PREFIX + "command_rate", "command rates over the window (absent when unknown: "
                                  "a zero denominator)", labels=["rate", "window"])
        for name, value in m.rates.items():
            if value is not None:
                rates.add_metric([name, window], value)
        outbox = GaugeMetricFamily(PREFIX + "alert_outbox", "alerts in the outbox by status (dead: given up on, "
                                   "someone was not paged; `govcon alerts list`)", labels=["status"])
        for status_name, n in gov.outbox.counts().items():
            outbox.add_metric([status_name], n)
        return [phase, kill, mode, grants, requests, shadow, whitelist, paused, leader, unresolved, trips, enabled,
                rule_shadow, readiness, ready, commands, rates, outbox]


class ApiMetrics:
    """The registry and this process's own series."""

    def __init__(self, gov, *, cache_seconds: float = 5.0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.gate_decisions = Counter(PREFIX + "gate_decisions", "gate decisions answered, by result",
                                      ["decision"], registry=r)
        self.gate_latency = Histogram(PREFIX + "gate_request_duration_seconds", "time to answer POST /api/gate",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.ingest_requests = Counter(PREFIX + "ingest_requests", "POST /api/events requests, by HTTP status",
                                       ["code"], registry=r)
        self.ingest_events = Counter(PREFIX + "ingest_events", "events received, by result",
                                     ["result"], registry=r)
        self.ingest_latency = Histogram(PREFIX + "ingest_request_duration_seconds",
                                        "time to store and acknowledge one POST /api/events",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.evaluation_latency = Histogram(PREFIX + "breaker_evaluation_duration_seconds",
                                            "time of one evaluation of every enabled breaker rule",
                                            buckets=_LATENCY_BUCKETS, registry=r)
        for decision in ("allow", "needs_approval", "deny"):
            self.gate_decisions.labels(decision)
        self._ingest_by_result = [(result, self.ingest_events.labels(result))
                                  for result in ("accepted", "duplicate", "rejected")]
        self._ingest_by_code: dict[int, Any] = {}
        r.register(GovernanceCollector(gov, cache_seconds=cache_seconds))

    def count_ingest(self, code: int, report: Any | None) -> None:
        """Per request on the hot path: the labelled children are looked up once (``labels`` builds a key
        and takes a lock each time)."""
        requests = self._ingest_by_code.get(code)
        if requests is None:
            requests = self._ingest_by_code[code] = self.ingest_requests.labels(str(code))
        requests.inc()
        if report is not None:
            for result, events in self._ingest_by_result:
                n = getattr(report, result)
                if n:
                    events.inc(n)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
