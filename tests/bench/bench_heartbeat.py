"""Issue 14, "Speed": heartbeats from 1,000 agents every 10 s (100 beats/s) on one `govcon serve` with
SQLite: heartbeat p99 <= 10 ms, and the gate's p99 no worse than 20% beside them.

One real server process on a fresh SQLite store at L4 (restart_service whitelisted, so every allow writes
its grant: the gate is write-bound and meets the beats at SQLite's write lock). 1,000 agents, each with
its own token (a token beats for the agent named as its operator), registered by one beat each first.
Then, in the same run: the gate alone at GATE_RATE asks/s naming live agents (the baseline), and the
gate at the same rate while 1,000 agents beat every 10 s (open loop, 100 beats/s). Latencies are the
client's, request sent to answer read, over keep-alive connections (tests/serve_process.py).

Run: .venv/bin/python -m pytest -q -s tests/bench/bench_heartbeat.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from engine.clock import ManualClock
from engine.governance import Governance
from engine.tokens import TokenBook
from storage import state_repo
from storage.store import Store
from tests.bench.bench_api import BARE_APP
from tests.bench.figures import report
from tests.serve_process import ServeProcess, _exchange, free_port, post_bytes

AGENTS = 1_000
BEAT_EVERY = 10.0  # seconds: 100 beats/s over all agents
BEAT_CONNECTIONS = 20
GATE_RATE = 50  # asks/s, each allow writing its grant
GATE_CONNECTIONS = 4
SECONDS = 30.0  # of each: the gate alone, and the gate beside the beats
ROUNDS = 3
BEAT_P99_TARGET = 0.010
GATE_RATIO_TARGET = 1.20
CONFIG = "[agents]\ndefault_ttl = 60\n"


def _pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=1000)[int(q * 1000) - 1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def _open_loop(port: int, requests: list[tuple[str, bytes, str | None]], *, connections: int, rate: float,
                     seconds: float) -> tuple[list[float], dict[int, int]]:
    """Send ``requests`` (path, body, token) round robin at ``rate`` per second over ``connections``
    keep-alive connections for ``seconds``; (latencies, statuses)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    interval = connections / rate
    deadline = time.perf_counter() + seconds

    async def client(c: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = c
        next_at = time.perf_counter() + c * interval / connections
        try:
            while time.perf_counter() < deadline:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
                path, body, token = requests[n % len(requests)]
                started = time.perf_counter()
                status, _ = await _exchange(reader, writer, post_bytes(path, body, token))
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
                n += connections
        finally:
            writer.close()

    await asyncio.gather(*(client(c) for c in range(connections)))
    return latencies, statuses


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bare_uvicorn(tmp_path):
    """The physical floor: a bare uvicorn (same loop and parser as `govcon serve`) whose one ASGI app
    reads the body and answers a fixed JSON document (tests/bench/bench_api.py BARE_APP)."""
    import subprocess
    import sys

    import httpx
    (tmp_path / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level",
                             "warning"], cwd=tmp_path)
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.post(f"http://127.0.0.1:{port}/x", content=b"{}", timeout=1)
            return proc, port
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the bare uvicorn did not start"
            time.sleep(0.05)


def test_heartbeats_of_1000_agents_beside_the_gate(tmp_path):
    url = str(tmp_path / "governance.db")
    store = Store(url)
    clock = ManualClock(datetime.now(UTC))
    gov = Governance(store, clock)
    gov.init_store("bench")
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    book = TokenBook(store, clock)
    names = [f"bot-{i:04d}" for i in range(AGENTS)]
    tokens = {name: book.create("bench", name, agent=name).secret for name in names}
    for name in names:
        gov.grant_role("bench", name, "agent")
    store.dispose()
    server = ServeProcess(url, tmp_path, config=CONFIG).wait_ready()
    beats = [(f"/api/agents/{n}/heartbeat", b"{}", tokens[n]) for n in names]
    asks = [("/api/gate", json.dumps({"commandType": "restart_service", "agent": n}).encode(), None)
            for n in names[:50]]
    try:
        # every agent registers (its first beat is the audited path), then the measured runs
        lat, st = asyncio.run(_open_loop(server.port, beats, connections=BEAT_CONNECTIONS, rate=200,
                                         seconds=AGENTS / 200 + 0.5))
        assert set(st) == {200}, st
        async def both():
            return await asyncio.gather(
                _open_loop(server.port, beats, connections=BEAT_CONNECTIONS, rate=AGENTS / BEAT_EVERY,
                           seconds=SECONDS / ROUNDS),
                _open_loop(server.port, asks, connections=GATE_CONNECTIONS, rate=GATE_RATE, seconds=SECONDS / ROUNDS))
        # the baseline and the load interleaved (alone, beside, alone, beside ...): the shared machine's
        # load drifts, and both sides of the ratio should see the same drift
        alone, beside, beat_lat, bare_lat = [], [], [], []
        gate_st, beside_st, beat_st = {}, {}, {}
        cpu_alone = cpu_beside = cpu_bare = 0.0
        bare, bare_port = _bare_uvicorn(tmp_path)
        for _ in range(ROUNDS):
            cpu = _cpu_seconds(bare.pid)  # the floor: the same beats, same rate, to a bare uvicorn
            lat_f, st_f = asyncio.run(_open_loop(bare_port, beats, connections=BEAT_CONNECTIONS,
                                                 rate=AGENTS / BEAT_EVERY, seconds=SECONDS / ROUNDS))
            cpu_bare += _cpu_seconds(bare.pid) - cpu
            bare_lat += lat_f
            assert set(st_f) == {200}, st_f
            cpu = _cpu_seconds(server.proc.pid)
            lat_a, st_a = asyncio.run(_open_loop(server.port, asks, connections=GATE_CONNECTIONS, rate=GATE_RATE,
                                                 seconds=SECONDS / ROUNDS))
            cpu_alone += _cpu_seconds(server.proc.pid) - cpu
            cpu = _cpu_seconds(server.proc.pid)
            (lat_b, st_b), (lat_g, st_g) = asyncio.run(both())
            cpu_beside += _cpu_seconds(server.proc.pid) - cpu
            alone += lat_a
            beat_lat += lat_b
            beside += lat_g
            for total, part in ((gate_st, st_a), (beat_st, st_b), (beside_st, st_g)):
                for k, v in part.items():
                    total[k] = total.get(k, 0) + v
        bare.terminate()
        bare.wait(10)
    finally:
        assert server.stop() == 0
    check = Store(url)
    try:
        with check.read() as conn:
            from storage import agents_repo
            rows = agents_repo.list_all(conn, limit=AGENTS + 1)
    finally:
        check.dispose()
    gate_alone, gate_beside, beat_p99 = _pct(alone, 0.99), _pct(beside, 0.99), _pct(beat_lat, 0.99)
    ratio = gate_beside / gate_alone
    report(f"POST /api/agents/NAME/heartbeat: {AGENTS:,} agents every {BEAT_EVERY:.0f} s "
           f"({AGENTS / BEAT_EVERY:.0f} beats/s, {BEAT_CONNECTIONS} connections), beside POST /api/gate at "
           f"{GATE_RATE}/s (each allow writes a grant), {SECONDS:.0f} s each in {ROUNDS} interleaved rounds, SQLite",
           target=f"heartbeat p99 <= {_ms(BEAT_P99_TARGET)}; gate p99 beside beats <= {GATE_RATIO_TARGET:.2f} x alone",
           heartbeat=f"{len(beat_lat):,} beats, p50 {_ms(statistics.median(beat_lat))}, p90 "
                     f"{_ms(_pct(beat_lat, 0.90))}, p99 {_ms(beat_p99)}, max {_ms(max(beat_lat))}",
           bare_uvicorn_same_beats=f"{len(bare_lat):,} beats, p50 {_ms(statistics.median(bare_lat))}, p99 "
                                  f"{_ms(_pct(bare_lat, 0.99))}: heartbeat p99 {beat_p99 / _pct(bare_lat, 0.99):.1f}x, "
                                  f"CPU {cpu_bare / max(len(bare_lat), 1) * 1000:.3f} ms per request",
           gate_alone=f"{len(alone):,} asks, p50 {_ms(statistics.median(alone))}, p99 {_ms(gate_alone)}",
           gate_beside_beats=f"{len(beside):,} asks, p50 {_ms(statistics.median(beside))}, p99 {_ms(gate_beside)}",
           gate_p99_ratio=f"{ratio:.2f}",
           server_cpu=f"{cpu_alone / SECONDS * 100:.0f}% of a core alone, {cpu_beside / SECONDS * 100:.0f}% beside "
                      f"the beats: {(cpu_beside - cpu_alone) / max(len(beat_lat), 1) * 1000:.3f} ms CPU per beat "
                      f"({(cpu_beside - cpu_alone) / max(cpu_bare, 1e-9):.1f}x the bare uvicorn's for the same beats)",
           load_average=" ".join(f"{x:.1f}" for x in os.getloadavg()),
           statuses=f"beats {beat_st}, gate {gate_st} / {beside_st}",
           stored=f"{len(rows):,} agents, {sum(r.beats for r in rows):,} beats recorded")
    assert set(beat_st) == {200} and set(gate_st) == {200} and set(beside_st) == {200}
    assert len(rows) == AGENTS and sum(r.beats for r in rows) == len(lat) + len(beat_lat)  # every beat counted
    # a beat writes the lease once half its TTL is left: every stored lease has at least that much ahead
    assert all(r.lease_expires_at >= r.last_beat_at + timedelta(seconds=30) for r in rows)
    assert beat_p99 <= BEAT_P99_TARGET
    assert ratio <= GATE_RATIO_TARGET
