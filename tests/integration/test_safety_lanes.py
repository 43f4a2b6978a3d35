"""Reads never starve the safety paths (issue 11, point 5), on a real `govcon serve` over both stores:
64 tokenless readers hammer GET /api/governance/state and /api/readiness/current (in a process of
their own, so the load generator does not share a GIL with the measurements) while an agent asks the
gate: the gate's p99 stays under 50 ms, a kill-switch engage takes under 1 s, and a critical incident
ingested meanwhile is stored. The readers are rate-limited (429 with Retry-After) and served from the
cache: the store sees at most a few readiness computations a second, however many readers there are."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engine.clock import ManualClock, isoformat
from engine.governance import Governance
from engine.tokens import TokenBook
from storage import state_repo, tables
from storage.store import Store
from tests.serve_process import ROOT, ServeProcess

ADMIN = "alice"
READERS = 64

# 64 keep-alive connections, each sending GETs back to back until SIGTERM (or `seconds` at the latest);
# prints {status: count} when done
READER_SCRIPT = textwrap.dedent("""
    import asyncio, json, signal, sys, time
    port, seconds, clients = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    paths = ["/api/governance/state", "/api/readiness/current"]
    counts, retry_after, running, stopped = {}, set(), [0], [False]
    async def reader(c):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        deadline, n = time.monotonic() + seconds, 0
        while time.monotonic() < deadline and not stopped[0]:
            w.write(f"GET {paths[(c + n) % 2]} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n".encode())
            head = await r.readuntil(b"\\r\\n\\r\\n")
            status, low = int(head[9:12]), head.lower()
            i = low.find(b"content-length:")
            await r.readexactly(int(head[i + 15:head.index(b"\\r\\n", i)]))
            if b"retry-after:" in low:
                retry_after.add(status)
            counts[status] = counts.get(status, 0) + 1
            n += 1
            if n == 1:
                running[0] += 1
                if running[0] == clients:
                    print("reading", flush=True)  # every reader is connected and has had an answer
        w.close()
    async def main():
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: stopped.__setitem__(0, True))
        await asyncio.gather(*(reader(c) for c in range(clients)))
    asyncio.run(main())
    print(json.dumps({"counts": counts, "retryAfter": sorted(retry_after)}))
""")


@pytest.fixture
def busy_store(store_url):
    """A store with a month of history (20,000 commands, incidents), L3+ with restart_service
    whitelisted, and tokens for dave (on-call: engages the kill switch) and an ingesting agent."""
    store = Store(store_url)
    now = datetime.now(UTC)
    gov = Governance(store, ManualClock(now))
    gov.init_store(ADMIN, phase_started=now - timedelta(days=200))
    gov.grant_role(ADMIN, "dave", "on-call")
    gov.grant_role(ADMIN, "bot", "on-call")
    history = ({"kind": "command", "id": f"h{i}", "type": ("restart_service", "scale_pool", "clear_cache")[i % 3],
                "status": "failed" if i % 50 == 0 else "succeeded", "autonomous": True,
                "at": isoformat(now - timedelta(days=30) + timedelta(seconds=i * 120))} for i in range(20_000))
    gov.ingestor.ingest_objects(history)
    gov.ingestor.ingest_objects([{"kind": "incident", "id": f"inc-h{i}", "severity": "low",
                                  "at": isoformat(now - timedelta(days=i + 1))} for i in range(20)])
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"])
        state_repo.release_lease(conn, name="scheduler", holder="test-leader")
    book = TokenBook(store, gov.clock)
    tokens = {who: book.create(ADMIN, who).secret for who in ("dave", "bot")}
    yield store_url, store, tokens
    store.dispose()


def _post(conn: http.client.HTTPConnection, path: str, doc, token: str | None = None) -> tuple[int, dict, float]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    started = time.perf_counter()
    conn.request("POST", path, body=json.dumps(doc), headers=headers)
    response = conn.getresponse()
    body = json.loads(response.read())
    return response.status, body, time.perf_counter() - started


@pytest.mark.parametrize("limit", ["rate-limited", "unlimited"])
def test_64_readers_do_not_slow_the_gate_the_kill_switch_or_ingest(busy_store, tmp_path, limit):
    """Rate-limited (the default): most readers get a 429, held a second. Unlimited ([serve] read_rate =
    0): every read is answered, from the cache, and the safety paths still have threads and connections
    of their own."""
    url, store, tokens = busy_store
    config = "[serve]\nread_rate = 0\n" if limit == "unlimited" else None
    server = ServeProcess(url, tmp_path, config=config).wait_ready()
    try:
        agent = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for _ in range(20):  # warm: pools, caches, imports
            assert _post(agent, "/api/gate", {"commandType": "restart_service"})[1]["decision"] == "allow"
        # unlimited: the one event loop answers ~5,000 cached reads a second and each ask waits its turn (p50
        # ~27 ms against ~3 ms), so its asks take longer to collect; `seconds` bounds a loaded 2-core machine
        seconds, asks = (8.0, 300) if limit == "rate-limited" else (14.0, 200)
        readers = subprocess.Popen([sys.executable, "-c", READER_SCRIPT, str(server.port), str(seconds),
                                    str(READERS)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert readers.stdout.readline().strip() == "reading", "the readers never got going"
        latencies, decisions = [], set()
        stop_at = time.monotonic() + seconds - 3.0  # the gate asks end while the readers still read
        while time.monotonic() < stop_at and len(latencies) < asks:
            status, doc, took = _post(agent, "/api/gate", {"commandType": "restart_service"})
            assert status == 200, doc
            latencies.append(took)
            decisions.add(doc["decision"])
            time.sleep(0.005)
        ops = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        incident = {"kind": "incident", "id": "inc-under-load", "severity": "critical",
                    "at": isoformat(datetime.now(UTC))}
        status, report, ingest_took = _post(ops, "/api/events", incident, tokens["bot"])
        assert status == 200 and report["accepted"] == 1, report
        status, engaged, engage_took = _post(ops, "/api/kill-switch", {"action": "engage", "reason": "load test"},
                                             tokens["dave"])
        assert status == 200 and engaged["changed"] is True, engaged
        status, denied, _ = _post(agent, "/api/gate", {"commandType": "restart_service"})
        assert denied["decision"] == "deny" and "kill switch" in denied["reason"]
        readers.terminate()  # all measured while they read: they print their counts and end
        out, _ = readers.communicate(timeout=60)
    finally:
        server.stop()
    load = json.loads(out)
    counts = {int(k): v for k, v in load["counts"].items()}
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\n{store.dialect} {limit}: {sum(counts.values())} reads {counts}, {len(latencies)} gate asks, "
          f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms; ingest {ingest_took * 1000:.0f} ms, engage {engage_took * 1000:.0f} ms")
    assert len(latencies) >= 100 and decisions == {"allow"}
    # the bound holds as served (rate-limited); without the limit the one event loop is busy
    # answering ~5,000 cached reads a second and the gate queues behind them there (not for a thread or
    # a connection): slower, never starved. Its p99 was 195 ms alone at load 4 and went past 250 ms with a
    # second test worker beside it (make test's two): the bound there is starvation, not speed
    bound = 0.050 if limit == "rate-limited" else 1.0
    assert p99 < bound, f"gate p99 {p99 * 1000:.1f} ms under {READERS} readers ({limit})"
    assert engage_took < 1.0 and ingest_took < 1.0
    if limit == "unlimited":
        assert set(counts) == {200} and counts[200] > 1000, counts  # every read answered, none starved
    else:
        assert counts.get(200, 0) > 0 and counts.get(429, 0) > 0 and 429 in load["retryAfter"]
        assert set(counts) <= {200, 429}, counts  # no 5xx: nothing starved
    with store.read() as conn:
        assert conn.execute(sa.select(tables.incidents.c.severity)
                            .where(tables.incidents.c.incident_id == "inc-under-load")).scalar_one() == "critical"
