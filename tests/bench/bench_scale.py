"""Issue 16, "Speed" at scale: metrics for 7 days, the readiness assessment and `govcon status` over the
100k / 1M / 10M-event stores (180 days of simulator history ending at END), against raw sqlite3 reads of
the same 7-day window measured in the same run.

Build the stores first (once, into a cache directory):

    .venv/bin/python -m tests.bench.scale_build /tmp/scale-cache 8     # ~100k events
    .venv/bin/python -m tests.bench.scale_build /tmp/scale-cache 780   # ~10M events

then name them (absent ones are skipped):

    GOVCON_SCALE_STORES=100k=/tmp/scale-cache/scale-0023-8.db,1M=/tmp/bench-cache/big-0023-....db,\
10M=/tmp/scale-cache/scale-0023-780.db .venv/bin/python -m pytest -q -s -n 0 tests/bench/bench_scale.py

In process the clock is a ManualClock at END (the end of the stores' data). The `govcon status` process
reads the real "now": END is in the past, so its 7-day windows are past the data (the readiness and
metrics it prints look at an empty recent window; the whole history is still in the tables and indexes).
Only sanity is asserted (answers non-empty, a 10M store holds >= 9M events); the bars are reported.
"""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.clock import ManualClock, SystemClock
from engine.governance import Governance
from engine.simulator import generate_history
from storage.store import Store
from tests.bench.bench_console import LAUNCH_RUNS, ConsoleStore, _bare, _console, _launch
from tests.bench.conftest import END
from tests.bench.figures import ms, p50, report

RUNS = 15
WARMUP = 3
STATUS_RUNS = 5
IDLE_SECONDS = 10
GOVCON = Path(sys.executable).with_name("govcon")


def _stores() -> dict[str, Path]:
    spec = os.environ.get("GOVCON_SCALE_STORES", "")
    out: dict[str, Path] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, path = item.partition("=")
        out[name] = Path(path)
    return out


SIZES = list(_stores()) or ["none"]


def _path(size: str) -> Path:
    path = _stores().get(size)
    if path is None or not path.exists():
        pytest.skip(f"store {size!r} not given in GOVCON_SCALE_STORES or absent")
    return path


def _events(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                   for t in ("command_events", "incidents", "safety_events", "eval_coverage"))


def _measure(fn: Callable[[], Any]) -> tuple[list[float], list[float], Any]:
    """(wall seconds, thread CPU seconds) of RUNS calls after WARMUP untimed ones; and the last answer."""
    answer = None
    for _ in range(WARMUP):
        answer = fn()
    wall, cpu = [], []
    for _ in range(RUNS):
        w, c = time.perf_counter(), time.thread_time()
        answer = fn()
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    return wall, cpu, answer


def _fig(wall: list[float], cpu: list[float]) -> str:
    return f"wall p50 {ms(p50(wall))} (max {ms(max(wall))}), CPU p50 {ms(p50(cpu))}"


def _iso(moment) -> str:  # command_events.at as SQLAlchemy stores it in SQLite
    return moment.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


@pytest.fixture(scope="module", params=SIZES)
def scale(request):
    path = _path(request.param)
    events = _events(path)
    clock = ManualClock(END)
    store = Store(f"sqlite:///{path}")
    gov = Governance(store, clock)
    yield request.param, path, events, gov
    store.dispose()


def test_in_process_at_scale(scale):
    size, path, events, gov = scale
    if size.upper().startswith("10M"):
        assert events >= 9_000_000, events
    start = END - timedelta(days=7)
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count_sql = "SELECT count(*) FROM command_events WHERE at >= ? AND at < ?"
        window = (_iso(start), _iso(END))
        raw_count = _measure(lambda: raw.execute(count_sql, window).fetchone()[0])
        hours = (int(start.timestamp()) // 3600, int(END.timestamp()) // 3600)
        # one index seek per command type (the primary key leads with command_type), as storage/rollups.py
        types = [r[0] for r in raw.execute("SELECT DISTINCT command_type FROM command_rollups")]
        rollup_sql = (f"SELECT command_type, autonomous, status, sum(n) FROM command_rollups "
                      f"WHERE command_type IN ({','.join('?' * len(types))}) AND hour >= ? AND hour < ? "
                      f"GROUP BY command_type, autonomous, status")
        raw_rollup = _measure(lambda: raw.execute(rollup_sql, (*types, *hours)).fetchall())
    finally:
        raw.close()
    metrics = _measure(lambda: gov.metrics.collect_since(timedelta(days=7)))
    readiness = _measure(gov.readiness.assess)
    assert raw_count[2] > 0 and raw_rollup[2], "the 7-day window is empty"
    assert metrics[2].commands.total > 0 and metrics[2].rates["successRate"] is not None
    assert readiness[2].results, "no readiness results"
    base = p50(raw_count[1]) or 1e-9
    report(f"issue 16 at scale: {size}, {events:,} events (SQLite), in process, ManualClock at END, "
           f"p50 of {RUNS} after {WARMUP} warm-ups",
           raw_count_7d=f"{_fig(*raw_count[:2])}, rows {raw_count[2]:,}",
           raw_rollups_7d=f"{_fig(*raw_rollup[:2])}, rows {len(raw_rollup[2])}",
           metrics_7d=f"{_fig(*metrics[:2])}, commands {metrics[2].commands.total:,}",
           readiness=f"{_fig(*readiness[:2])}, score {readiness[2].score:.3f}",
           metrics_bar="p50 <= 10 ms: " + ("holds" if p50(metrics[0]) <= 0.010 else "NOT held") + " (wall), "
           + ("holds" if p50(metrics[1]) <= 0.010 else "NOT held") + " (CPU)",
           readiness_bar="p50 <= 50 ms: " + ("holds" if p50(readiness[0]) <= 0.050 else "NOT held") + " (wall), "
           + ("holds" if p50(readiness[1]) <= 0.050 else "NOT held") + " (CPU)",
           metrics_cpu_vs_raw_count=f"{p50(metrics[1]) / base:.1f}x",
           readiness_cpu_vs_raw_count=f"{p50(readiness[1]) / base:.1f}x")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_status_process_at_scale(scale, tmp_path):
    size, path, events, _ = scale
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTUAL", "NO_COLOR", "GOVCON_"))}
    env.update(GOVCON_DATABASE_URL=f"sqlite:///{path}", GOVCON_CONFIG=str(tmp_path / "no-config.toml"))

    _status(size, events, env, f"real clock: the data ends at {END:%Y-%m-%d}, in the past")


def _status(size: str, events: int, env: dict[str, str], clock: str) -> None:
    def once(argv: list[str]) -> tuple[float, float, str]:
        cpu, started = _children_cpu(), time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - started
        assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr[-2000:]}"
        return wall, _children_cpu() - cpu, done.stdout

    status, bare = [str(GOVCON), "status"], [sys.executable, "-c", "pass"]
    _, _, out = once(status)  # untimed: page cache warm
    assert out.strip(), "status printed nothing"
    samples, interp = [], []
    for _ in range(STATUS_RUNS):  # alternated with a bare interpreter start, the same moment's baseline
        samples.append(once(status))
        interp.append(once(bare))
    wall, cpu = [s[0] for s in samples], [s[1] for s in samples]
    report(f"issue 16 at scale: `govcon status` whole process, {size}, {events:,} events (SQLite), "
           f"{STATUS_RUNS} runs after 1 untimed ({clock})",
           wall=f"p50 {ms(p50(wall))} (min {ms(min(wall))}, max {ms(max(wall))})",
           cpu=f"p50 {ms(p50(cpu))} (min {ms(min(cpu))}, max {ms(max(cpu))})",
           python_c_pass=f"wall p50 {ms(p50([s[0] for s in interp]))}, CPU p50 {ms(p50([s[1] for s in interp]))}",
           bar="p50 <= 500 ms: " + ("holds" if p50(wall) <= 0.5 else "NOT held") + " (wall), "
           + ("holds" if p50(cpu) <= 0.5 else "NOT held") + " (CPU)",
           wall_runs=", ".join(ms(w) for w in wall), cpu_runs=", ".join(ms(c) for c in cpu))


#: the backtest in its own process, so its peak RSS is its own: (wall s, CPU s of all threads, max RSS MB,
#: windows judged, trips)
_BACKTEST = """
import resource, sys, time
from engine.backtest import Backtester
from engine.clock import ManualClock
from storage.store import Store
from tests.bench.conftest import END
store = Store(f"sqlite:///{sys.argv[1]}")
wall, cpu = time.perf_counter(), time.process_time()
result = Backtester(store, ManualClock(END)).run(sys.argv[2], sys.argv[3], days=int(sys.argv[4]))
print(time.perf_counter() - wall, time.process_time() - cpu,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, result.points, len(result.trips))
"""
BACKTEST_DAYS = 180
BACKTEST_RULES = (("High Error Rate", "errorRate > 0.05", "5m"),
                  ("per type", "commandType.failures >= 3", "5m"))


def test_backtest_at_scale(scale):
    """`rules backtest` over 180 days (issue 16: <= 30 s and <= 300 MB at 10M for High Error Rate), against
    raw sqlite3 reading the same range's (at, status, command_id) rows into Python in the same run: the
    least any replay of the raw events must read."""
    size, path, events, _ = scale
    start = END - timedelta(days=BACKTEST_DAYS, minutes=5)
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        started = time.perf_counter()
        rows = sum(1 for _ in raw.execute("SELECT at, status, command_id FROM command_events WHERE at >= ? "
                                          "AND at < ?", (_iso(start), _iso(END + timedelta(minutes=1)))))
        baseline = time.perf_counter() - started
    finally:
        raw.close()
    root = Path(__file__).resolve().parents[2]
    figures = {}
    for name, condition, window in BACKTEST_RULES:
        done = subprocess.run([sys.executable, "-c", _BACKTEST, str(path), condition, window, str(BACKTEST_DAYS)],
                              cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        wall, cpu, rss, points, trips = (float(x) for x in done.stdout.split())
        assert points == BACKTEST_DAYS * 24 * 60 + 1
        bar = (" (bar <= 30 s and <= 300 MB: " + ("holds" if wall <= 30 and rss <= 300 else "NOT held") + ")"
               if name == "High Error Rate" else "")
        figures[name.replace(" ", "_")] = (f"{condition!r} {window}: wall {wall:.1f} s, CPU {cpu:.1f} s (all threads), "
                                           f"max RSS {rss:.0f} MB, {points:,.0f} windows, {trips:.0f} trips, "
                                           f"{wall / baseline:.1f}x the raw read{bar}")
    report(f"issue 16 at scale: backtest over {BACKTEST_DAYS} days, {size}, {events:,} events (SQLite)",
           raw_read=f"{baseline:.2f} s for {rows:,} rows (sqlite3, (at, status, command_id) into Python)",
           **figures)


def test_stores_counted(scale):
    """The store's size by table (command_events is the bulk)."""
    size, path, events, _ = scale
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("command_events", "command_rollups")}
    report(f"issue 16 at scale: store {size}", events=f"{events:,}", file=f"{path.stat().st_size / 2**20:,.0f} MiB",
           **{k: f"{v:,}" for k, v in counts.items()})
    assert events > 0


# --- the console at scale (optional: GOVCON_SCALE_CONSOLE names one of the stores) -------------------

def _per_hour(path: Path) -> int:
    """Commands an hour of the store's history: scale-REV-N.db from scale_build, else the bench's 78."""
    tail = path.stem.rsplit("-", 1)[-1]
    return int(tail) if path.stem.startswith("scale-") and tail.isdigit() else 78


#: the last stretch of a top-up is stored as a live fleet would have sent it: each event within ON_TIME of
#: its stamp (the store's clock moved along), so no breaker window of the console opens on a backlog
LIVE_TAIL = timedelta(minutes=20)
LIVE_STEP = timedelta(seconds=4)


def _top_up(store: Store, start, now, per_hour: int) -> tuple[float, int]:
    """History from ``start`` to ``now``: up to LIVE_TAIL before now in one go (stored LIVE_TAIL ago:
    older than every rule window, so late evidence among it has left them), then the tail in LIVE_STEP
    slices, each stored at its end. (Stored all at ``now``, the last hour's ~2,000 events arrived late in
    every window the console judged, which measured a backlog being judged, not a console idling.)"""
    clock = ManualClock(now - LIVE_TAIL)
    loader = Governance(store, clock, evaluate_on_ingest=False)
    history = list(generate_history(start, now, commands_per_hour=per_hour, seed=2, id_prefix="gap"))
    started = time.perf_counter()
    cut = now - LIVE_TAIL
    added = loader.ingestor.ingest_objects(e for e in history if _at(e) < cut).accepted
    tail = [e for e in history if _at(e) >= cut]
    edge = cut
    while edge < now:
        lo, edge = edge, min(edge + LIVE_STEP, now)
        clock.set(edge)
        added += loader.ingestor.ingest_objects(e for e in tail if lo <= _at(e) < edge).accepted
    return time.perf_counter() - started, added


def _at(event: dict):
    return datetime.fromisoformat(event["at"].replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def console_copy(tmp_path_factory):
    """A private copy of the store named in GOVCON_SCALE_CONSOLE, topped up from END to now through the real
    Ingestor at the store's own rate (as bench_console's console_store), so the console and `status` read
    recent data under the real clock."""
    size = os.environ.get("GOVCON_SCALE_CONSOLE")
    if not size:
        pytest.skip("GOVCON_SCALE_CONSOLE not set: the console at scale is not measured")
    src = _path(size)
    path = tmp_path_factory.mktemp("scale-console") / "governance.db"
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as conn:
        conn.execute("PRAGMA wal_checkpoint")
    started = time.perf_counter()
    shutil.copyfile(src, path)
    copied = time.perf_counter() - started
    now = SystemClock().now()
    store = Store(f"sqlite:///{path}")
    try:
        topped, added = _top_up(store, END, now, _per_hour(src))
    finally:
        store.dispose()
    events = _events(path)
    report(f"issue 16 at scale: console copy of {size}", events=f"{events:,}",
           topped_up=f"{added:,} events from {END:%Y-%m-%d} to now in {topped:.0f} s (copy {copied:.0f} s)")
    yield size, path, events
    path.unlink(missing_ok=True)


def _process_cpu(pid: int) -> float:
    """user + system CPU seconds of the whole process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_console_at_scale(console_copy, tmp_path):
    size, path, events = console_copy
    store = ConsoleStore(path, events, END)
    ready = tmp_path / "ready"
    _launch(_console, store, ready)  # untimed: page cache and .pyc files warm
    _launch(_bare, store, ready)
    console, bare = [], []
    for _ in range(LAUNCH_RUNS):  # alternated, so a busy moment of the machine hits both
        console.append(_launch(_console, store, ready))
        bare.append(_launch(_bare, store, ready))
    with _console(store, ready) as proc:  # idle: no agent feeding, the console refreshing on its own
        proc.wait_ready()
        time.sleep(2)
        cpu, started = _process_cpu(proc.proc.pid), time.perf_counter()
        time.sleep(IDLE_SECONDS)
        idle = (_process_cpu(proc.proc.pid) - cpu) / (time.perf_counter() - started)
    ratio = p50(console) / p50(bare)
    report(f"issue 16 at scale: console, {size} topped up to now, {events:,} events (SQLite), "
           f"{LAUNCH_RUNS} launches each, alternated",
           console_p50=ms(p50(console)), console_runs=", ".join(ms(s) for s in console),
           bare_app_p50=ms(p50(bare)), bare_app_runs=", ".join(ms(s) for s in bare),
           ratio=f"{ratio:.2f}x (bar <= 2x: {'holds' if ratio <= 2 else 'NOT held'})",
           idle_cpu=f"{idle * 1000:.0f} ms/s over {IDLE_SECONDS} s, whole process "
                    f"(bar <= 50 ms/s: {'holds' if idle <= 0.050 else 'NOT held'})")
    assert min(console) > 0 and min(bare) > 0


def test_status_on_console_copy(console_copy, tmp_path):
    size, path, events = console_copy
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTUAL", "NO_COLOR", "GOVCON_"))}
    env.update(GOVCON_DATABASE_URL=f"sqlite:///{path}", GOVCON_CONFIG=str(tmp_path / "no-config.toml"))
    _status(f"{size} topped up to now", events, env, "real clock, data up to now")
