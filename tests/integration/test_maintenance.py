"""Retention pruning (removes old raw events and snapshots, keeps what it must) and online backup of a
SQLite store (a consistent copy while another connection writes)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engine.errors import InvalidInput
from engine.governance import Governance
from engine.ingest import Ingestor
from storage import events_repo, maintenance, partitions, readiness_repo, tables
from storage.maintenance import BackupNotSupported
from storage.store import Store
from tests.conftest import OPERATOR, T0
from tests.integration.conftest import Events

TABLES = [tables.command_events, tables.incidents, tables.safety_events, tables.eval_coverage,
          tables.metrics_snapshots, tables.readiness_assessments, tables.breaker_events,
          tables.alert_outbox, tables.proposals, tables.approvals, tables.audit_log, tables.gate_decisions,
          tables.action_requests, tables.grants]


def row_counts(store) -> dict[str, int]:
    with store.read() as conn:
        return events_repo.count_rows(conn, TABLES)


def breaker_event(conn, when, *, resolved=False, shadow=False) -> str:
    eid = uuid.uuid4().hex
    conn.execute(sa.insert(tables.breaker_events).values(
        id=eid, rule_name="High Error Rate", timestamp=when, severity="critical", action="revert_to_l3",
        command_type=None, observed={"errorRate": 0.2}, shadow=shadow, resolved=resolved,
        resolved_by=OPERATOR if resolved else None, resolved_at=when if resolved else None))
    return eid


def proposal(conn, pid, when, status):
    conn.execute(sa.insert(tables.proposals).values(
        id=pid, created_at=when, proposed_by="autonomy-governance-agent", current_phase="L3",
        target_phase="L3+", commands_to_whitelist=["restart_service"], validation_period_days=14,
        rationale={}, risk_assessment={}, required_approvals=["tech-lead"], status=status))


def outbox(conn, when, status):
    conn.execute(sa.insert(tables.alert_outbox).values(
        created_at=when, sink="webhook", severity="high", dedup_key=uuid.uuid4().hex, payload={},
        status=status, next_attempt_at=when))


@pytest.fixture
def aged_store(gov, clock):
    """A store 100 days after its creation, with rows on both sides of a 90-day retention cut."""
    clock.advance(timedelta(days=100))
    now = clock.now()
    old, cut, recent = now - timedelta(days=95), now - timedelta(days=90), now - timedelta(days=5)
    for when, tag in ((old, "old"), (recent, "new")):
        ev = Events(when)
        gov.ingestor.ingest_objects([
            *ev.lifecycle(f"{tag}-1", ["proposed", "approved", "succeeded"]), ev.command(f"{tag}-2", "failed"),
            ev.incident(f"{tag}-inc", "high", f"{tag}-2"), ev.safety("emergency_abort"), ev.coverage(9, 10)])
    gov.ingestor.ingest_objects([Events(cut).command("at-the-cut", "succeeded")])
    with gov.store.write() as conn:
        for when in (old, recent):
            readiness_repo.add_snapshot(conn, taken_at=when, period_start=when - timedelta(hours=1),
                                        period_end=when, total=4, data={})
            readiness_repo.add_assessment(conn, taken_at=when, score=0.5, ready=False, technical_score=0.5,
                                          process_score=0.5, organizational_score=0.5, data={})
        keep = {"open": breaker_event(conn, old), "shadow": breaker_event(conn, old, shadow=True),
                "recent": breaker_event(conn, recent, resolved=True)}
        breaker_event(conn, old, resolved=True)
        proposal(conn, "p-pending", old, "pending")
        proposal(conn, "p-rejected", old, "rejected")
        conn.execute(sa.insert(tables.approvals).values(proposal_id="p-pending", role="tech-lead",
                                                          approver="bob", at=old))
        outbox(conn, old, "pending")
        outbox(conn, old, "sent")
    return keep


def test_prune_removes_old_rows_and_keeps_what_it_must(gov, aged_store, clock):
    before = row_counts(gov.store)
    removed = gov.prune(OPERATOR, timedelta(days=90))
    assert removed == {"command_events": 4, "incidents": 1, "safety_events": 1, "eval_coverage": 1,
                       "metrics_snapshots": 1, "readiness_assessments": 1, "breaker_events": 1,
                       "alert_outbox": 1, "gate_decisions": 0, "action_requests": 0, "grants": 0}
    after = row_counts(gov.store)
    for table, n in removed.items():
        assert after[table] == before[table] - n, table
    # kept: proposals whatever their age or status, their approvals, the audit log (plus the prune entry)
    assert (after["proposals"], after["approvals"]) == (2, 1)
    assert after["audit_log"] == before["audit_log"] + 1
    with gov.store.read() as conn:
        kept = set(conn.execute(sa.select(tables.breaker_events.c.id)).scalars())
        commands = set(conn.execute(sa.select(tables.command_events.c.command_id)).scalars())
        pending = conn.execute(sa.select(tables.alert_outbox.c.status)).scalars().all()
    assert kept == set(aged_store.values())
    assert commands == {"new-1", "new-2", "at-the-cut"}  # a row exactly at the cut is not older than it
    assert pending == ["pending"]
    entry = gov.audit_entries(limit=1)[0]
    assert (entry["action"], entry["actor"]) == ("db.prune", OPERATOR)
    details = dict(entry["details"])
    if gov.store.dialect == "sqlite":  # a new SQLite file has auto_vacuum=INCREMENTAL: the prune frees pages
        assert details.pop("pagesFreed") >= 0
        with gov.store.read() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
    else:  # PostgreSQL: the months of command_events made (the clock's and the next two; the migration made
        # those of the real date) and dropped (none whole here: tests/integration/test_partitions.py)
        month = partitions.month_of(clock.now())
        ahead = [month, partitions.next_month(month), partitions.next_month(partitions.next_month(month))]
        made = details.pop("partitions")
        assert made["dropped"] == [] and set(made["made"]) <= {partitions.name_of(m) for m in ahead}
        with gov.store.read() as conn:
            assert {partitions.name_of(m) for m in ahead} <= set(partitions.partitions(conn))
    assert details == {"olderThanDays": 90, "removed": removed}
    assert gov.audit_verify()[1] is None


def test_pruning_again_removes_nothing(gov, aged_store):
    gov.prune(OPERATOR, timedelta(days=90))
    assert set(gov.prune(OPERATOR, timedelta(days=90)).values()) == {0}


def test_metrics_of_the_kept_period_do_not_change(gov, aged_store):
    before = gov.metrics.collect_since(timedelta(days=30)).to_json()
    gov.prune(OPERATOR, timedelta(days=90))
    assert gov.metrics.collect_since(timedelta(days=30)).to_json() == before


def test_prune_refuses_less_than_a_day(gov):
    with pytest.raises(InvalidInput, match="at least 1d"):
        gov.prune(OPERATOR, timedelta(hours=12))


# --- backup -----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_gov(sqlite_url, clock):
    store = Store(sqlite_url)
    gov = Governance(store, clock)
    gov.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
    yield gov
    store.dispose()


def test_backup_is_a_copy_with_the_same_rows(sqlite_gov, tmp_path):
    ev = Events(T0 - timedelta(hours=1))
    sqlite_gov.ingestor.ingest_objects([ev.command(f"c{i}", "succeeded") for i in range(100)])
    sqlite_gov.grant_role(OPERATOR, "bob", "on-call")
    target = tmp_path / "backups" / "copy.db"
    size = sqlite_gov.backup(target)
    assert size == target.stat().st_size > 0
    assert not target.with_name("copy.db.partial").exists()
    copy = Store(str(target))
    try:
        assert row_counts(copy) == row_counts(sqlite_gov.store)
        copy_gov = Governance(copy, sqlite_gov.clock)
        assert copy_gov.audit_verify() == sqlite_gov.audit_verify()
        assert copy_gov.status() == sqlite_gov.status()
    finally:
        copy.dispose()


def test_backup_while_another_connection_writes_is_consistent(sqlite_gov, sqlite_url, tmp_path):
    """The writer stores 25-event batches in one transaction each: a consistent copy holds whole
    batches only, and its audit chain verifies."""
    stop = threading.Event()
    errors: list[BaseException] = []
    writes = {"batches": 0}

    def writer():
        store = Store(sqlite_url)
        try:
            ingestor = Ingestor(store, sqlite_gov.clock)
            other = Governance(store, sqlite_gov.clock)
            while not stop.is_set():
                n = writes["batches"]
                ev = Events(T0 - timedelta(minutes=n))
                ingestor.ingest_objects([ev.command(f"b{n}-{i}", "succeeded") for i in range(25)])
                other.attest(OPERATOR, "chaos-engineering-tests-passing", passed=True, evidence=f"run {n}")
                writes["batches"] = n + 1
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            store.dispose()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while writes["batches"] < 3 and thread.is_alive():
            stop.wait(0.01)
        copies = []
        for i in range(3):
            target = tmp_path / f"copy-{i}.db"
            sqlite_gov.backup(target)
            copies.append(target)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert writes["batches"] >= 3
    final = row_counts(sqlite_gov.store)
    for target in copies:
        db = sqlite3.connect(target)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            commands = db.execute("SELECT count(*) FROM command_events").fetchone()[0]
            attestations = db.execute("SELECT count(*) FROM attestations").fetchone()[0]
        finally:
            db.close()
        assert commands % 25 == 0 and 0 < commands <= final["command_events"]
        assert attestations in (commands // 25, commands // 25 - 1)  # a batch commits before its attestation
        copy = Store(str(target))
        try:
            checked, problem = Governance(copy, sqlite_gov.clock).audit_verify()
        finally:
            copy.dispose()
        assert problem is None and checked == 1 + attestations


def test_backup_refuses_an_existing_path(sqlite_gov, tmp_path):
    target = tmp_path / "precious.db"
    target.write_text("do not overwrite")
    with pytest.raises(FileExistsError, match="exists already"):
        sqlite_gov.backup(target)
    assert target.read_text() == "do not overwrite"


@pytest.mark.postgres
def test_backup_of_postgresql_says_to_use_pg_dump(postgres_url, clock, tmp_path):
    store = Store(postgres_url)
    try:
        with pytest.raises(BackupNotSupported, match="pg_dump"):
            Governance(store, clock).backup(tmp_path / "copy.db")
    finally:
        store.dispose()
    assert not (tmp_path / "copy.db").exists()


def test_prune_keeps_commands_that_kept_incidents_name(gov, clock):
    """An incident inside the retention period keeps its command, so attribution does not change."""
    from datetime import timedelta

    from engine.clock import isoformat
    old = clock.now() - timedelta(days=100)
    recent = clock.now() - timedelta(days=10)
    gov.ingestor.ingest_objects([
        {"kind": "command", "id": "c-old", "type": "t", "status": "failed", "autonomous": True, "at": isoformat(old)},
        {"kind": "command", "id": "c-gone", "type": "t", "status": "failed", "autonomous": True, "at": isoformat(old)},
        {"kind": "incident", "id": "i-1", "severity": "high", "command_id": "c-old", "at": isoformat(recent)},
    ])
    before = gov.metrics.collect(recent - timedelta(days=1), clock.now()).incidents["fromAutonomousActions"]
    removed = gov.prune(OPERATOR, timedelta(days=90))
    assert removed["command_events"] == 1
    after = gov.metrics.collect(recent - timedelta(days=1), clock.now()).incidents["fromAutonomousActions"]
    assert before == after == 1


def test_a_prune_gives_the_freed_pages_back_to_the_filesystem(sqlite_gov, sqlite_url):
    """auto_vacuum=INCREMENTAL: after a prune of most of the store a few vacuum steps leave the free list
    empty and the file under half its size (a PRAGMA incremental_vacuum(N) executed once through Python's
    sqlite3 frees one page only: 50 steps would free 50 pages)."""
    old = Events(T0 - timedelta(days=100))
    sqlite_gov.ingestor.ingest_objects([old.command(f"c{i}-{'x' * 150}", "succeeded") for i in range(20_000)])
    store = sqlite_gov.store

    def checkpointed_size() -> int:  # the file once its log is copied in (storage/checkpoint.py does it later)
        raw = sqlite3.connect(sqlite_url)
        try:
            deadline = time.monotonic() + 10  # busy while the checkpointer thread or a reader holds the log
            while raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] != 0:
                assert time.monotonic() < deadline, "the log could not be copied in within 10 s"
                time.sleep(0.05)
        finally:
            raw.close()
        return os.path.getsize(sqlite_url)

    before = checkpointed_size()
    with store.write() as conn:
        assert maintenance.prune(conn, T0 - timedelta(days=90))["command_events"] == 20_000
    freed = maintenance.incremental_vacuum(store.write, store.dialect, max_steps=50, sleep=lambda _s: None)
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
    assert freed > 1000
    after = checkpointed_size()
    assert after < before / 2, (after, before)


def test_partition_upkeep_is_a_no_op_on_sqlite(sqlite_url, clock):
    store = Store(sqlite_url)
    try:
        write = store.write
        assert partitions.ensure_months(write, T0) == []
        assert partitions.drop_older(write, T0) == []
        with store.read() as conn:
            assert partitions.partitions(conn) == {} and not partitions.is_partitioned(conn)
    finally:
        store.dispose()
