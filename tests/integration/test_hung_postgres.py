"""A hung PostgreSQL (postmaster and backends paused with SIGSTOP: the kernel still acknowledges TCP, so
no socket ever times out by itself): the safety lane answers within its deadline instead of hanging —
the gate denies within 2 s, /health answers 503 within 2 s — and everything works again once the
server resumes. Runs on a throwaway cluster of its own (tests/pg_cluster.py), never the shared one."""

from __future__ import annotations

import concurrent.futures
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from engine.clock import ManualClock
from engine.governance import Governance
from engine.tokens import TokenBook
from storage import state_repo
from storage.db import StoreUnavailable
from storage.store import Store, use_lane
from tests import pg_cluster
from tests.safety_lane import PRODUCTION as SAFETY
from tests.safety_lane import use_production_lane
from tests.serve_process import ServeProcess

pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(pg_cluster.unavailable_reason() is not None,
                                 reason=pg_cluster.unavailable_reason() or "")]
ADMIN = "alice"
WITHIN = 2.0  # seconds: the bound for a deny and a 503


@pytest.fixture(autouse=True)
def production_deadline(monkeypatch):
    use_production_lane(monkeypatch)


@pytest.fixture(scope="module")
def cluster():
    with pg_cluster.throwaway_cluster() as c:
        yield c


@pytest.fixture
def paused(cluster):
    """Resumes the cluster after the test, whatever happened."""
    yield cluster
    cluster.resume()


def _timed(fn, *args, **kwargs):
    started = time.monotonic()
    try:
        return fn(*args, **kwargs), time.monotonic() - started
    except Exception as exc:  # the caller asserts on what was raised
        return exc, time.monotonic() - started


def _fresh_schema(cluster, name: str) -> str:
    admin = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    admin.dispose()
    return f"{cluster.url}?options=-csearch_path%3D{name}"


def test_the_safety_lane_gives_up_within_its_deadline_and_recovers(paused):
    store = Store(_fresh_schema(paused, "lane"))
    gov = Governance(store, ManualClock(datetime.now(UTC)))
    gov.init_store(ADMIN)
    with store.read(lane="safety") as conn:  # a pooled connection the pause will catch
        conn.execute(sa.text("SELECT 1"))
    paused.pause()
    # the pooled connection (its ping hangs), then new ones (connecting hangs), then a write
    for attempt in range(SAFETY.pool_size + SAFETY.max_overflow + 2):
        raised, took = _timed(lambda: store.read(lane="safety").__enter__())
        assert isinstance(raised, StoreUnavailable), raised
        assert "did not answer within 1.5 s" in str(raised) and took < WITHIN, (attempt, took)
    raised, took = _timed(gov.overrides.engage_kill_switch, ADMIN, "hung store")
    assert isinstance(raised, StoreUnavailable) and took < WITHIN
    with use_lane("safety"):  # as the API's safety routes run it (console/api_lanes.py)
        decision, took = _timed(gov.gate.decide, "restart_service")
    paused.resume()
    assert took < WITHIN and decision.decision == "deny" and "failing closed" in decision.reason
    # resumed: the lane works again at once, and nothing of the refused engage was written
    with store.read(lane="safety") as conn:
        assert state_repo.get_state(conn).kill_switch_engaged is False
    assert gov.gate.decide("restart_service").decision == "needs_approval"
    store.dispose()


def test_a_real_server_denies_and_reports_unhealthy_within_2s_on_a_hung_store(paused, tmp_path):
    url = _fresh_schema(paused, "serve")
    store = Store(url)
    clock = ManualClock(datetime.now(UTC))
    gov = Governance(store, clock)
    gov.init_store(ADMIN, phase_started=clock.now() - timedelta(days=200))
    gov.grant_role(ADMIN, "dave", "on-call")
    token = TokenBook(store, clock).create(ADMIN, "dave").secret
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"])
    store.dispose()
    server = ServeProcess(url, tmp_path).wait_ready()  # the fixture's environment gives it the 1.5 s lane
    try:
        client = httpx.Client(base_url=server.base, timeout=30)
        for _ in range(3):  # warm: pooled connections on every lane, the token cached
            assert client.post("/api/gate", json={"commandType": "restart_service"}).json()["decision"] == "allow"
            assert client.get("/health").status_code == 200
        paused.pause()
        # one after another (the pooled connections first, then new ones), and several at once
        for _ in range(4):
            answer, took = _timed(client.post, "/api/gate", json={"commandType": "restart_service"})
            assert answer.status_code == 200 and answer.json()["decision"] == "deny", answer.text
            assert took < WITHIN, took
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            asks = [pool.submit(_timed, client.post, "/api/gate", json={"commandType": "restart_service"})
                    for _ in range(6)]
            for ask in asks:
                answer, took = ask.result()
                assert answer.json()["decision"] == "deny" and took < WITHIN, (answer.text, took)
        health, took = _timed(client.get, "/health")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy" and took < WITHIN, took
        engage, took = _timed(client.post, "/api/kill-switch", json={"action": "engage", "reason": "hung"},
                              headers={"Authorization": f"Bearer {token}"})
        assert took < 2 * WITHIN, took  # answered (whatever the fallback), never hung
        paused.resume()
        deadline = time.monotonic() + 10
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the server did not recover after the store resumed"
            time.sleep(0.1)
        recovered = client.post("/api/gate", json={"commandType": "restart_service"}).json()
        assert recovered["decision"] in ("allow", "deny") and "failing closed" not in recovered["reason"]
    finally:
        paused.resume()
        server.stop()
