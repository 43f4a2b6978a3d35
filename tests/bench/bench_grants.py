"""Issue 12, "Speed": an allow now writes a grant (and its audit entry and decision row) in one serialised
transaction. In-process p99 <= 2 ms on SQLite and on PostgreSQL with 1M events and 100k grants stored.
Baseline in the same run: the same decision without taking a grant (a read only), and a bare INSERT of one
row in its own transaction through the same driver (the physical floor of "write something and commit").

Run: .venv/bin/python -m pytest -q -s tests/bench/bench_grants.py
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from datetime import timedelta

import sqlalchemy as sa

from engine.governance import Governance
from engine.policies import load_policies
from storage import state_repo, tables
from tests.bench.conftest import BigStore
from tests.bench.figures import report

ALLOW_TARGET = 0.002
GRANTS = 100_000
ASKS = 2000
#: limits a busy fleet would set; the asks below come a second apart and report their outcomes
POLICY = {"service_restart": {"command_types": ["restart_service"], "max_per_day": 5000,
                              "max_per_week": 30000, "max_concurrent": 100, "confidence_threshold": 0.8}}
STEP = timedelta(seconds=1)


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _seed_grants(gov: Governance, n: int) -> None:
    """n grants with outcomes, five command types, spread over the last 180 days."""
    now = gov.clock.now()
    have = 0
    with gov.store.write(serialise=False) as conn:  # the session's store is shared: start from the same grants
        conn.execute(sa.delete(tables.grants))
        # and without the outcomes an earlier run (cached store) reported: their grants are gone, so they
        # would count as runs without a grant and spend the day's budget
        conn.execute(sa.delete(tables.command_events).where(tables.command_events.c.command_id.startswith("gr-")))
    spacing = timedelta(days=180) / n
    types = ("restart_service", "scale_pool", "clear_cache", "rotate_logs", "tune_pool")
    rows = [{"id": f"gr-seed{i:010d}", "command_type": types[i % len(types)],
             "service": f"svc-{i % 40}", "agent": f"agent-{i % 25}", "confidence": 0.9, "action_class": None,
             "policy": None, "granted_at": now - spacing * (n - i),
             "expires_at": now - spacing * (n - i) + timedelta(minutes=15),
             "status": "succeeded", "outcome_at": None, "request_id": None, "approved_by": None,
             "requested_by": "bench", "report": None} for i in range(have, n)]
    with gov.store.write(serialise=False) as conn:
        conn.execute(sa.insert(tables.grants), rows)


#: the asking thread's CPU time per sample (``time.thread_time``), by figure: steadier than wall time on a
#: loaded machine (a thread waiting for a core or the GIL uses none)
CPU: dict[str, list[float]] = {}


def _samples(fn, n: int, name: str = "") -> list[float]:
    for _ in range(100):
        fn()
    out, cpu = [], CPU.setdefault(name, [])
    for _ in range(n):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        out.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    return out


def _cpu(name: str) -> str:
    samples = CPU.get(name) or [0.0, 0.0]
    return f"p50 {_us(statistics.median(samples))}, p99 {_us(p99(samples))}"


def _bare_insert(gov: Governance):
    """One row in its own transaction through the same engine: the floor of any write-and-commit."""
    table = tables.gate_decisions
    now = gov.clock.now()

    def insert() -> None:
        with gov.store.engine.begin() as conn:
            conn.execute(sa.insert(table).values(at=now, command_type="bare", decision="deny", reason="floor"))
    return insert


def test_allow_with_grant_latency(big_store: BigStore):
    gov = Governance(big_store.store, big_store.clock, evaluate_on_ingest=False, policies=load_policies(POLICY))
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"],
                                paused_command_types=[], kill_switch_engaged=False, mode="normal")
    _seed_grants(gov, GRANTS)
    agent = "bench-" + secrets.token_hex(3)
    read_only = _samples(lambda: gov.gate.decide("restart_service", confidence=0.9, agent=agent, take_grant=False),
                         ASKS, "read_only")
    allows = []
    for i in range(ASKS + 100):  # each agent reports its outcome (untimed), as governed agents do
        gov.clock.advance(STEP)
        start, start_cpu = time.perf_counter(), time.thread_time()
        decision = gov.gate.decide("restart_service", confidence=0.9, agent=agent)
        took, took_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
        assert decision.grant_id is not None, decision.reason
        if i >= 100:
            allows.append(took)
            CPU.setdefault("allow", []).append(took_cpu)
        gov.ingestor.ingest_objects([{"kind": "command", "id": decision.grant_id, "type": "restart_service",
                                      "status": "succeeded", "autonomous": True,
                                      "at": gov.clock.now().isoformat()}])
    refused = _samples(lambda: gov.gate.decide("restart_service", confidence=0.5, agent=agent), ASKS, "refused")
    floor = _samples(_bare_insert(gov), ASKS, "floor")
    gov.actions.decision_log.flush(timeout=30)
    report(f"gate allow with its grant, {big_store.events:,} events + {GRANTS:,} grants ({big_store.name})",
           target=f"p99 <= {ALLOW_TARGET * 1000:.0f} ms",
           allow=f"p50 {_us(statistics.median(allows))}, p99 {_us(p99(allows))}",
           same_decision_without_grant=f"p50 {_us(statistics.median(read_only))}, p99 {_us(p99(read_only))}",
           needs_approval=f"p50 {_us(statistics.median(refused))}, p99 {_us(p99(refused))} (logged off the path)",
           bare_insert_commit=f"p50 {_us(statistics.median(floor))}, p99 {_us(p99(floor))}",
           ratio_allow_to_bare_insert=f"{statistics.median(allows) / statistics.median(floor):.2f}x p50",
           cpu_allow=_cpu("allow"), cpu_same_decision_without_grant=_cpu("read_only"),
           cpu_needs_approval=_cpu("refused"), cpu_bare_insert_commit=_cpu("floor"),
           ratio_cpu_allow_to_bare_insert=f"{statistics.median(CPU['allow']) / statistics.median(CPU['floor']):.2f}x p50",
           load_average=" ".join(f"{x:.1f}" for x in os.getloadavg()),
           ratio_to_target=f"{p99(allows) / ALLOW_TARGET:.2f}")
    assert p99(allows) <= ALLOW_TARGET
