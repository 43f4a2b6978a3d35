"""Issue 13, "Speed": a console key that acts, to its confirmation, p50 at most 50 ms through the socket.

The real console (make_app, the pilot's run_test at 120x40, the once-a-second refresh on) resolves open breaker
events on the dashboard: `r`, a note, then Enter — the key that acts. Timed from just before Enter is
pressed to the moment the console shows its confirmation toast ("Resolved: …", GovconApp.notify, recorded
inside the call). Client mode: the console is a client of a real `govcon serve --socket` process
(console/client.py RemoteGovernance; the resolve and the refresh that follows go through the socket).
Baseline in the same run: the same key in embedded mode (the console opening its own copy of the same
store). Rounds alternate embedded, client, embedded, client on fresh copies, so a change of the machine's
load hits both.

Run: .venv/bin/python -m pytest -q -s tests/bench/bench_console_keys.py
"""

from __future__ import annotations

import shutil
import statistics
import time
from datetime import timedelta

import pytest

from console.client import RemoteGovernance
from console.identity import current_operator
from engine.clock import ManualClock
from engine.governance import Governance
from screens.modals import ConfirmModal
from storage import breaker_repo
from storage.store import Store
from tests.bench.figures import report
from tests.pilot.conftest import until
from tests.pilot.seed import OPERATOR, T0, seeded_gov
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.anyio
KEYS_PER_ROUND = 20
ROUNDS = 2
TARGET_P50 = 0.050
ME = current_operator()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The pilot tests' seeded store plus open alert_only events to resolve, and the OS user as on-call."""
    path = tmp_path_factory.mktemp("keys") / "template.db"
    gov = seeded_gov(str(path))
    gov.grant_role(OPERATOR, ME, "on-call")
    with gov.store.write() as conn:
        for i in range(KEYS_PER_ROUND + 5):
            breaker_repo.insert_event(
                conn, id=f"cbe-bench-{i:04d}", rule_name="High Error Rate", timestamp=T0 - timedelta(minutes=i),
                severity="medium", action="alert_only", command_type=None, shadow=False,
                observed={"errorRate": 0.07, "samples": 40, "window": "5m", "effect": "alerted"})
    gov.store.dispose()
    return path


PHASES = ("dialog closed, change asked", "worker thread started", "the store or the service acted",
          "the answer on screen")


async def _resolve_keys(gov, operator: str, n: int, phases: list[list[float]]) -> list[float]:
    """Seconds from Enter to the confirmation toast, for ``n`` resolutions on the dashboard; ``phases`` gets,
    per key, the seconds of each step (PHASES): Enter to app.perform, to its worker running the change, the
    change itself (SQLite, or one call through the socket), and its answer back on the main thread as a toast."""
    from console.app import make_app
    app = make_app(gov, operator=operator, scheduler=False)
    shown: list[tuple[float, str]] = []
    marks: dict[str, float] = {}
    notify, perform = app.notify, app.perform

    def recording(message, **kw):
        shown.append((time.perf_counter(), kw.get("title", "")))
        notify(message, **kw)

    def timed_perform(fn, done, **kw):
        marks["perform"] = time.perf_counter()

        def run():
            marks["thread"] = time.perf_counter()
            try:
                return fn()
            finally:
                marks["acted"] = time.perf_counter()
        perform(run, done, **kw)
    app.notify = recording  # type: ignore[method-assign]
    app.perform = timed_perform  # type: ignore[method-assign]
    samples: list[float] = []
    done: set[str] = set()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.live is not None and app.live.ok, timeout=30, what="the first read")
        screen = app.screen

        def next_event():
            ev = screen.selected_event()
            return ev if ev is not None and ev["id"] not in done else None
        for _ in range(n):
            await until(pilot, lambda: next_event() is not None, timeout=30, what="an open event selected")
            event_id = next_event()["id"]
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the note dialog")
            await pilot.press("o", "k")
            before = len(shown)
            start = time.perf_counter()
            await pilot.press("enter")
            await until(pilot, lambda: any(t == "Resolved" for _at, t in shown[before:]), timeout=30,
                        what="the confirmation")
            at = next(at for at, t in shown[before:] if t == "Resolved")
            samples.append(at - start)
            phases.append([marks["perform"] - start, marks["thread"] - marks["perform"],
                           marks["acted"] - marks["thread"], at - marks["acted"]])
            done.add(event_id)
    return samples


async def test_resolve_key_to_its_confirmation_through_the_socket_vs_embedded(template, tmp_path):
    embedded: list[float] = []
    client: list[float] = []
    embedded_phases: list[list[float]] = []
    client_phases: list[list[float]] = []
    for round_ in range(ROUNDS):
        db = tmp_path / f"embedded-{round_}.db"
        shutil.copyfile(template, db)
        gov = Governance(Store(str(db)), ManualClock(T0))
        try:
            embedded += await _resolve_keys(gov, OPERATOR, KEYS_PER_ROUND, embedded_phases)
        finally:
            gov.store.dispose()

        work = tmp_path / f"client-{round_}"
        work.mkdir()
        db = work / "governance.db"
        shutil.copyfile(template, db)
        sock = work / "govcon.sock"
        serve = ServeProcess(f"sqlite:///{db}", work, extra_args=("--socket", str(sock))).wait_ready()
        remote = RemoteGovernance(f"unix://{sock}")
        try:
            client += await _resolve_keys(remote, ME, KEYS_PER_ROUND, client_phases)
        finally:
            remote.close()
            serve.stop()

    def line(xs: list[float]) -> str:
        q = statistics.quantiles(xs, n=20)
        return (f"p50 {statistics.median(xs) * 1000:.1f} ms, p90 {q[17] * 1000:.1f} ms, "
                f"min {min(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms (n={len(xs)})")
    def steps(rows: list[list[float]]) -> str:
        return " · ".join(f"{name} {statistics.median(r[i] for r in rows) * 1000:.1f}"
                          for i, name in enumerate(PHASES)) + " (p50 ms each)"
    ratio = statistics.median(client) / statistics.median(embedded)
    report("console key r (resolve) Enter -> confirmation toast",
           client_socket=line(client), embedded_same_run=line(embedded), ratio_p50=f"{ratio:.2f}x",
           client_steps=steps(client_phases), embedded_steps=steps(embedded_phases),
           target=f"client p50 <= {TARGET_P50 * 1000:.0f} ms")
    if statistics.median(client) > TARGET_P50 and statistics.median(embedded) > TARGET_P50:
        pytest.xfail(f"client p50 {statistics.median(client) * 1000:.1f} ms misses {TARGET_P50 * 1000:.0f} ms, and so "
                     f"does the embedded console in the same run ({statistics.median(embedded) * 1000:.1f} ms): the "
                     "machine, not the socket (see the steps)")
    assert statistics.median(client) <= TARGET_P50, f"client p50 {statistics.median(client) * 1000:.1f} ms"
