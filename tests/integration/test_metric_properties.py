"""Properties on both stores, against a plain Python model of the events:

- the metrics of any window [start, end) are the contract's counts (distinct commands per status, total
  distinct commands, autonomous ones apart) and its rates are those counts' ratios;
- the API's group commit (``Ingestor.store_groups``: several requests in one transaction) stores each
  event once whatever the duplicates, their order and the grouping, and a resend of everything stores
  nothing.

Each hypothesis example writes into days of its own (and ids of its own) in the one store of the test,
so the examples share a store without seeing each other. (In CI the examples are the same on every run:
the hypothesis profile in tests/conftest.py.)
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import isoformat
from engine.metrics import CommandCounts
from tests.conftest import T0

PATHS = [("proposed",), ("proposed", "rejected"), ("proposed", "approved"),
         ("proposed", "approved", "succeeded"), ("proposed", "approved", "failed"),
         ("proposed", "approved", "succeeded", "rolled_back"), ("succeeded",), ("failed",)]
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)

#: (path, autonomous, start within the day in ms, gap between statuses in ms)
commands = st.lists(st.tuples(st.sampled_from(PATHS), st.booleans(), st.integers(0, DAY // MS - 1),
                              st.integers(1, 3_600_000)), min_size=1, max_size=12)
REGION = 5 * DAY  # an example's events lie in [base, base + 27 h); its windows in [base - 2 h, base + 56 h)
PROPERTY = settings(max_examples=20,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _events(prefix: str, base: datetime, specs) -> list[dict]:
    out = []
    for i, (path, autonomous, start_ms, gap_ms) in enumerate(specs):
        for k, status in enumerate(path):
            at = base + (start_ms + k * gap_ms) * MS
            out.append({"kind": "command", "id": f"{prefix}-c{i}", "type": ("restart", "scale")[i % 2],
                        "status": status, "autonomous": autonomous, "at": isoformat(at), "_at": at})
    return out


def _model(events: list[dict], start: datetime, end: datetime, autonomous_only: bool = False) -> CommandCounts:
    inside = [e for e in events if e["kind"] == "command" and start <= e["_at"] < end
              and (e["autonomous"] or not autonomous_only)]
    n = {s: len({e["id"] for e in inside if e["status"] == s})
         for s in ("proposed", "approved", "rejected", "succeeded", "failed", "rolled_back")}
    return CommandCounts.from_status_counts({**n, "total": len({e["id"] for e in inside})})


def _wire(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "_at"} for e in events]


def _region(counter) -> tuple[str, datetime]:
    """A day and an id prefix no other example of the test uses."""
    n = next(counter)
    return f"x{n}", T0 - (n + 1) * REGION


def test_metrics_of_any_window_are_the_contracts_counts_and_ratios(gov):
    counter = itertools.count()

    @PROPERTY
    @given(specs=commands, bounds=st.tuples(st.integers(-2 * 3600, 26 * 3600), st.integers(1, 30 * 3600)))
    def check(specs, bounds):
        prefix, base = _region(counter)
        events = _events(prefix, base, specs)
        report = gov.ingestor.ingest_objects(_wire(events))
        assert report.accepted == len(events) and not report.errors, report.errors
        start = base + timedelta(seconds=bounds[0])
        end = start + timedelta(seconds=bounds[1])
        metrics = gov.metrics.collect(start, end)
        assert metrics.commands == _model(events, start, end)
        assert metrics.autonomous == _model(events, start, end, autonomous_only=True)
        assert metrics.rates == metrics.commands.rates() == _model(events, start, end).rates()
        whole = gov.metrics.collect(base - 2 * DAY, base + 3 * DAY)  # every lifecycle whole: rates within [0, 1]
        assert all(r is None or 0.0 <= r <= 1.0 for r in whole.rates.values()), whole.rates
        assert whole.commands.total == len(specs)
    check()


def test_group_commit_stores_each_event_once_whatever_the_duplicates_order_and_grouping(gov):
    counter = itertools.count()

    @PROPERTY
    @given(specs=commands, seed=st.integers(0, 2**32 - 1), dup_share=st.floats(0, 1), groups=st.integers(1, 5),
           commits=st.integers(1, 3))
    def check(specs, seed, dup_share, groups, commits):
        prefix, base = _region(counter)
        rng = random.Random(seed)
        canonical = _events(prefix, base, specs)
        canonical.append({"kind": "incident", "id": f"{prefix}-inc", "severity": "critical",
                          "command_id": f"{prefix}-c0", "at": isoformat(base + DAY / 2), "_at": base + DAY / 2})
        sent = list(canonical) + [e for e in canonical if rng.random() < dup_share]
        rng.shuffle(sent)
        numbered = list(enumerate(_wire(sent), start=1))
        cuts = sorted(rng.randrange(len(numbered) + 1) for _ in range(groups * commits - 1))
        parts = [numbered[a:b] for a, b in zip([0, *cuts], [*cuts, len(numbered)], strict=True)]
        reports = []
        for c in range(commits):  # several group commits, each of several requests
            reports += gov.ingestor.store_groups(parts[c * groups:(c + 1) * groups])
        assert sum(r.accepted for r in reports) == len(canonical)
        assert sum(r.duplicate for r in reports) == len(sent) - len(canonical)
        assert not any(r.errors or r.rejected for r in reports)
        again = gov.ingestor.ingest_objects(_wire(canonical))  # a resend of everything stores nothing
        assert (again.accepted, again.duplicate) == (0, len(canonical))
        start, end = base - 2 * DAY, base + 3 * DAY
        metrics = gov.metrics.collect(start, end)
        assert metrics.commands == _model(canonical, start, end)
        assert metrics.incidents["total"] == 1 and metrics.incidents["critical"] == 1
        assert metrics.incidents["fromAutonomousActions"] == (1 if specs[0][1] else 0)
    check()
