"""Reliability: kill -9 in the middle of an ingest, a full disk, a store made read-only."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.clock import isoformat
from engine.governance import Governance
from storage.store import Store
from tests.conftest import OPERATOR, T0
from tests.polling import wait_until

N = 100_000


def _events_file(path: Path, n: int = N) -> Path:
    with path.open("w") as f:
        for i in range(n):
            at = T0 - timedelta(days=30) + timedelta(seconds=i * 7)
            f.write(json.dumps({"kind": "command", "id": f"k{i}", "type": f"t{i % 7}", "status": "succeeded",
                                "autonomous": False, "at": isoformat(at)}) + "\n")
    return path


def _count(store: Store) -> tuple[int, int]:
    with store.read() as conn:
        rows = conn.execute(sa.text("SELECT count(*), count(DISTINCT command_id) FROM command_events")).one()
    return rows[0], rows[1]


def _cli(url: str, *argv: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "GOVCON_DATABASE_URL": url, "GOVCON_CONFIG": "/nonexistent/govcon.toml"}
    return subprocess.Popen([sys.executable, "-m", "console", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_kill_9_mid_ingest_loses_no_committed_batch_and_duplicates_nothing(gov, store, store_url, tmp_path):
    from console.identity import current_operator
    gov.grant_role(OPERATOR, current_operator(), "on-call")
    source = _events_file(tmp_path / "events.jsonl")
    proc = _cli(store_url, "ingest", str(source))
    deadline = time.time() + 60
    while time.time() < deadline and _count(store)[0] == 0 and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored, distinct = _count(store)
    assert stored == distinct  # nothing twice
    assert stored % gov.ingestor.batch_size == 0 and 0 < stored < N, stored  # whole batches, no partial one
    if store.dialect == "sqlite":
        db = store.engine.url.database
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # after the restart the same file completes the store, exactly once
    again = _cli(store_url, "ingest", "--json", str(source))
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    doc = json.loads(out)
    assert doc["accepted"] == N - stored and doc["duplicate"] == stored
    assert _count(store) == (N, N)


@pytest.fixture
def small_mount(tmp_path):
    """A tmpfs of 2 MiB (needs root and mount; skipped where the sandbox forbids it)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _init_small_store(mnt: Path, clock) -> tuple[str, Governance]:
    url = str(mnt / "governance.db")
    gov = Governance(Store(url), clock)
    gov.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
    gov.grant_role(OPERATOR, OPERATOR, "incident-commander")
    return url, gov


def test_a_full_disk_is_a_clear_error_and_damages_nothing(small_mount, clock):
    url, gov = _init_small_store(small_mount, clock)
    first = gov.ingestor.ingest_objects([{"kind": "command", "id": f"a{i}", "type": "t", "status": "succeeded",
                                          "at": isoformat(T0)} for i in range(1000)])
    assert first.accepted == 1000
    filler = small_mount / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k", "count=64"], capture_output=True)
    from storage.db import StoreUnavailable
    with pytest.raises(StoreUnavailable, match="full"):
        for round_ in range(50):  # keep writing until the disk is full
            gov.ingestor.ingest_objects([{"kind": "command", "id": f"b{round_}-{i}", "type": "t",
                                          "status": "failed", "at": isoformat(T0)} for i in range(5000)])
    with pytest.raises(StoreUnavailable):
        gov.overrides.engage_kill_switch(OPERATOR, "disk full")
    assert gov.gate.decide("t").decision == "needs_approval"  # reads still work: the gate still answers
    filler.unlink()
    gov.store.dispose()
    db = str(small_mount / "governance.db")
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sqlite3.connect(db).execute("SELECT count(*) FROM command_events WHERE command_id LIKE 'a%'").fetchone()[0] == 1000
    assert gov.audit_verify()[1] is None


def test_a_read_only_store_fails_closed_and_damages_nothing(small_mount, clock, tmp_path):
    url, gov = _init_small_store(small_mount, clock)
    gov.ingestor.ingest_objects([{"kind": "command", "id": f"a{i}", "type": "t", "status": "succeeded",
                                  "at": isoformat(T0)} for i in range(100)])
    gov.store.dispose()
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], capture_output=True).returncode == 0
    try:
        ro = Governance(Store(url, apply_migrations=False), clock)
        assert ro.gate.decide("t").decision == "deny"  # cannot read reliably: fail closed
        proc = _cli(url, "kill-switch", "engage", "--reason", "read-only store")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "store" in err and "Traceback" not in err
        gate = _cli(url, "gate", "t", "--json")
        out, err = gate.communicate(timeout=60)
        assert gate.returncode == 4 and json.loads(out)["decision"] == "deny"
        ro.store.dispose()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_mount)], capture_output=True)
    db = str(small_mount / "governance.db")
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sqlite3.connect(db).execute("SELECT count(*) FROM command_events").fetchone()[0] == 100


def test_serve_stays_up_on_a_full_disk(small_mount, clock, tmp_path):
    """(A mount cannot be made read-only under a process holding files open; a full disk is the case
    a running server meets.) Writes fail with a clear error, reads and the gate go on, nothing breaks."""
    import httpx

    from tests.serve_process import ServeProcess
    url, gov = _init_small_store(small_mount, clock)
    token = gov.tokens.create(OPERATOR, OPERATOR).secret
    auth = {"Authorization": f"Bearer {token}"}
    gov.store.dispose()
    (tmp_path / "serve").mkdir()
    server = ServeProcess(url, tmp_path / "serve").wait_ready()
    filler = small_mount / "filler"
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k", "count=64"], capture_output=True)
        failed = None
        for round_ in range(40):
            r = httpx.post(server.base + "/api/events", timeout=30, headers=auth, json=[
                {"kind": "command", "id": f"full-{round_}-{i}", "type": "t", "status": "failed",
                 "at": isoformat(T0)} for i in range(1000)])
            if r.status_code >= 500:
                failed = r
                break
        assert failed is not None, f"the disk never filled: last answer {r.status_code} {r.text[:300]}"
        assert "full" in failed.text.lower() and "Traceback" not in failed.text
        assert server.proc.poll() is None  # still serving
        assert httpx.get(server.base + "/health", timeout=10).status_code in (200, 503)
        gate = httpx.post(server.base + "/api/gate", json={"commandType": "t"}, timeout=10)
        assert gate.status_code == 200 and gate.json()["decision"] in ("needs_approval", "deny")
    finally:
        filler.unlink(missing_ok=True)
        server.stop()
    db = str(small_mount / "governance.db")
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert Governance(Store(url), clock).audit_verify()[1] is None


@pytest.mark.postgres
def test_serve_stays_up_when_postgresql_turns_read_only(own_postgres_database, tmp_path):
    """A PostgreSQL store made read-only (a failover to a standby, an operator's safety switch): writes
    get a clear 503 naming the store, reads and the gate go on, the server stays up, nothing is lost."""
    import httpx

    from engine.clock import SystemClock
    from tests.serve_process import ServeProcess
    admin, db, url = own_postgres_database
    gov = Governance(Store(url), SystemClock())
    gov.init_store(OPERATOR)
    gov.grant_role(OPERATOR, OPERATOR, "incident-commander")
    token = gov.tokens.create(OPERATOR, OPERATOR).secret
    gov.store.dispose()
    auth = {"Authorization": f"Bearer {token}"}
    event = {"kind": "command", "id": "ro-0", "type": "t", "status": "succeeded", "at": isoformat(T0)}
    (tmp_path / "serve").mkdir()
    server = ServeProcess(url, tmp_path / "serve").wait_ready()

    def drop_sessions(conn):
        """Terminates the server's sessions and waits until they are gone (termination is asynchronous)."""
        pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
                            {"db": db}).scalars().all()
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        gone = sa.text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = ANY(:pids)")
        if pids:
            wait_until(lambda: conn.execute(gone, {"pids": list(pids)}).scalar(), interval=0.02,
                       what="the terminated sessions to end")
    try:
        assert httpx.post(server.base + "/api/events", json=event, headers=auth).status_code == 200
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on'))
            drop_sessions(conn)
        refused = None
        for attempt in range(5):  # the first request may meet a terminated pooled connection
            r = httpx.post(server.base + "/api/events", timeout=30, headers=auth,
                           json={**event, "id": f"ro-{attempt + 1}"})
            if r.status_code >= 500:
                refused = r
                break
        assert refused is not None and refused.status_code == 503, refused
        assert "read-only" in refused.text and "Traceback" not in refused.text
        gate = httpx.post(server.base + "/api/gate", json={"commandType": "t"}, timeout=10)
        assert gate.status_code == 200 and gate.json()["decision"] == "needs_approval"  # reads still work
        ks = httpx.post(server.base + "/api/kill-switch", timeout=30, headers=auth,
                        json={"action": "engage", "reason": "test"})
        assert ks.status_code == 200 and ks.json()["via"] == "marker", ks.text  # the second path holds it
        assert ks.json()["message"].startswith("store not writable: engaged by marker file")
        gate = httpx.post(server.base + "/api/gate", json={"commandType": "t"}, timeout=10)
        assert gate.json()["decision"] == "deny" and "marker file" in gate.json()["reason"]
        assert server.proc.poll() is None
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{db}" RESET default_transaction_read_only'))
            drop_sessions(conn)
        server.stop()
    fresh = Governance(Store(url), SystemClock())
    assert fresh.audit_verify()[1] is None
    with fresh.store.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM command_events")).scalar_one() == 1
    fresh.store.dispose()


@pytest.mark.postgres
def test_a_token_still_names_its_operator_when_its_use_cannot_be_recorded(own_postgres_database):
    """Recording a token's last use is bookkeeping: on a read-only store it is skipped, not a refusal."""
    from engine.clock import SystemClock
    from engine.tokens import TokenBook
    admin, db, url = own_postgres_database
    gov = Governance(Store(url), SystemClock())
    gov.init_store(OPERATOR)
    secret = gov.tokens.create(OPERATOR, "alice").secret
    gov.store.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on'))
    try:
        ro = Governance(Store(url, apply_migrations=False), SystemClock())
        tokens = TokenBook(ro.store, ro.clock, cache_seconds=0)
        assert tokens.verify(secret) == "alice"
        assert tokens.drain() and tokens.list()[-1]["lastUsedAt"] is None
        ro.store.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{db}" RESET default_transaction_read_only'))
    rw = Governance(Store(url), SystemClock())
    tokens = TokenBook(rw.store, rw.clock, cache_seconds=0)
    assert tokens.verify(secret) == "alice"
    assert tokens.drain() and tokens.list()[-1]["lastUsedAt"] is not None
    rw.store.dispose()
