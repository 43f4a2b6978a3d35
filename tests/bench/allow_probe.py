"""A quick probe of the allow path (issue 12 "Speed"), outside pytest, on an existing 1M-event store: statements
per allow, then N allows timed (wall and the asking thread's CPU), each followed by its outcome as in
bench_grants.py. For before/after figures from two trees on the same store without rebuilding it:

    .venv/bin/python tests/bench/allow_probe.py URL [N]

URL: a copy of the bench's cached SQLite store (GOVCON_BENCH_CACHE) or a PostgreSQL schema built once by
tests/bench/conftest.py's ``_fill`` (``postgresql+psycopg://…?options=-csearch_path%3DSCHEMA``).
"""

from __future__ import annotations

import collections
import os
import secrets
import statistics
import sys
import time

sys.path.insert(0, os.getcwd())

import sqlalchemy as sa  # noqa: E402

from engine.clock import ManualClock  # noqa: E402
from engine.governance import Governance  # noqa: E402
from engine.policies import load_policies  # noqa: E402
from storage import state_repo  # noqa: E402
from storage.store import Store  # noqa: E402
from tests.bench.bench_grants import GRANTS, POLICY, STEP, _seed_grants  # noqa: E402
from tests.bench.conftest import END  # noqa: E402


def main(url: str, n: int) -> None:
    clock = ManualClock(END)
    store = Store(url)
    gov = Governance(store, clock, evaluate_on_ingest=False, policies=load_policies(POLICY))
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"],
                                paused_command_types=[], kill_switch_engaged=False, mode="normal")
    _seed_grants(gov, GRANTS)
    agent = "probe-" + secrets.token_hex(3)
    statements: collections.Counter = collections.Counter()
    counting = [False]

    @sa.event.listens_for(store.engine_for("safety"), "before_cursor_execute")
    def _count(conn, cursor, statement, params, context, many):
        if counting[0]:
            statements[" ".join(statement.split())[:100]] += 1

    from storage import actions_repo  # the gate's precompiled statements run on the driver: count them here
    plain_execute = actions_repo.Precompiled.execute

    def counted_execute(self, conn, params):
        if counting[0]:
            statements["(driver) " + " ".join(self.sql.split())[:91]] += 1
        return plain_execute(self, conn, params)
    actions_repo.Precompiled.execute = counted_execute

    wall: list[float] = []
    cpu: list[float] = []

    def one() -> None:
        clock.advance(STEP)
        start, start_cpu = time.perf_counter(), time.thread_time()
        decision = gov.gate.decide("restart_service", confidence=0.9, agent=agent)
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
        assert decision.grant_id, decision.reason
        gov.ingestor.ingest_objects([{"kind": "command", "id": decision.grant_id, "type": "restart_service",
                                      "status": "succeeded", "autonomous": True, "at": clock.now().isoformat()}])

    for _ in range(100):
        one()
    counting[0] = True
    one()
    counting[0] = False
    print(f"statements per allow (safety lane and the driver's, besides BEGIN/COMMIT and the pool's ping): {sum(statements.values())}")
    for text, count in statements.most_common():
        print(f"  {count} x {text}")
    wall.clear()
    cpu.clear()
    for _ in range(n):
        one()
    q, qc = statistics.quantiles(wall, n=100), statistics.quantiles(cpu, n=100)
    print(f"allow, {n} asks: wall p50 {statistics.median(wall) * 1e3:.2f} ms, p90 {q[89] * 1e3:.2f}, "
          f"p99 {q[98] * 1e3:.2f} ms; thread CPU p50 {statistics.median(cpu) * 1e3:.2f} ms, p99 {qc[98] * 1e3:.2f} ms; "
          f"load average {os.getloadavg()[0]:.2f}")
    store.dispose()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
