"""command_events partitioned by month on PostgreSQL (issue 16, storage/partitions.py, migration 0023).

A populated store from before the partitions keeps every event and rollup through the migration; a
resend stamped in another month stores nothing; events of a month without a partition wait in the
DEFAULT and move out when the month is made; a prune drops whole months, keeps what a kept incident
names, and leaves the rollups equal to a rebuild; and a kill-switch engage never waits for a drop.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engine.clock import ManualClock
from engine.governance import Governance
from storage import events_repo, partitions, rollups, tables
from storage.migrate import current_revision, head_revision
from storage.store import Store
from tests.conftest import OPERATOR, T0, migrated_to
from tests.gc_pauses import engages_while, frozen_heap, slowest
from tests.integration.conftest import Events
from tests.integration.test_migrations import schema_diff

pytestmark = pytest.mark.postgres

CMD = tables.command_events


@pytest.fixture
def pg_store(postgres_url):
    s = Store(postgres_url)
    yield s
    s.dispose()


@pytest.fixture
def pg_gov(pg_store, clock) -> Governance:
    g = Governance(pg_store, clock)
    g.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
    return g


def _events(store) -> list[tuple]:
    with store.read() as conn:
        return sorted(conn.execute(sa.select(CMD.c.id, CMD.c.command_id, CMD.c.status, CMD.c.command_type,
                                             CMD.c.autonomous, CMD.c.at, CMD.c.ingested_at, CMD.c.service,
                                             CMD.c.judged_on_arrival)).all())


def _rollups(store) -> set[tuple]:
    r = tables.command_rollups
    with store.read() as conn:
        return set(conn.execute(sa.select(r.c.command_type, r.c.hour, r.c.autonomous, r.c.status,
                                          r.c.prev_hour, r.c.n).where(r.c.n != 0)).all())


def _rebuilt(store) -> set[tuple]:
    """The rollups a rebuild from the raw events makes (the store's own are left as they were)."""
    r = tables.command_rollups
    with store.engine.connect() as conn:
        with conn.begin() as tx:
            rollups.rebuild(conn)
            got = set(conn.execute(sa.select(r.c.command_type, r.c.hour, r.c.autonomous, r.c.status,
                                              r.c.prev_hour, r.c.n).where(r.c.n != 0)).all())
            tx.rollback()
    return got


def _where(store, cid: str, status: str) -> str | None:
    with store.read() as conn:
        return partitions.partition_of_row(conn, cid, status)


def _unserialised(store):
    return lambda: store.write(serialise=False)


def _month(y: int, m: int) -> datetime:
    return datetime(y, m, 1, tzinfo=UTC)


# --- the migration ------------------------------------------------------------------------------


def test_migrating_a_populated_store_keeps_every_event_and_rollup(postgres_url):
    store = Store(postgres_url, apply_migrations=False)
    try:
        with migrated_to(store, "0022") as conn:
            rows = []
            for i in range(600):  # four months, commands spanning a month's end, one far back
                at = datetime(2026, 8, 29, tzinfo=UTC) + timedelta(hours=5 * i)
                for j, status in enumerate(("proposed", "approved", "succeeded")):
                    rows.append({"command_id": f"c{i}", "command_type": f"t{i % 3}", "status": status,
                                 "autonomous": i % 2 == 0, "at": at + timedelta(hours=j * 20),
                                 "ingested_at": at, "service": "api" if i % 4 else None,
                                 "judged_on_arrival": i % 5 == 0})
            rows.append({"command_id": "ancient", "command_type": "t0", "status": "succeeded",
                         "autonomous": True, "at": datetime(2019, 3, 3, tzinfo=UTC),
                         "ingested_at": datetime(2026, 9, 1, tzinfo=UTC), "service": None,
                         "judged_on_arrival": False})
            conn.execute(sa.insert(CMD), rows)
            rollups.rebuild(conn)
        assert current_revision(store.engine) == "0022"
        before_events, before_rollups = _events(store), _rollups(store)
        assert len(before_events) == 1801
        assert store.migrate() == ("0022", head_revision())
        assert _events(store) == before_events
        assert _rollups(store) == before_rollups == _rebuilt(store)
        with store.read() as conn:
            assert partitions.is_partitioned(conn)
            made = partitions.partitions(conn)
            # every month with events has its partition (2019-03 too), the DEFAULT, and the months ahead
            for y, m in ((2019, 3), (2026, 8), (2026, 9), (2026, 10), (2026, 11), (2026, 12)):
                assert partitions.name_of(_month(y, m)) in made
            assert partitions.DEFAULT_PARTITION in made
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {partitions.DEFAULT_PARTITION}").scalar() == 0
            # the id sequence carried over: a new row gets the next id
            new_id = conn.execute(sa.insert(CMD).values(
                command_id="new", command_type="t0", status="proposed", autonomous=False,
                at=datetime(2026, 9, 9, tzinfo=UTC), ingested_at=datetime(2026, 9, 9, tzinfo=UTC),
                judged_on_arrival=False).returning(CMD.c.id)).scalar_one()
            conn.rollback()
        assert new_id > max(e[0] for e in before_events)
        assert _where(store, "ancient", "succeeded") == "command_events_p2019_03"
        assert schema_diff(store) == []
    finally:
        store.dispose()


# --- ingest ---------------------------------------------------------------------------------------


def test_a_resend_stamped_in_another_month_stores_nothing(pg_gov, pg_store, clock):
    when = T0 - timedelta(days=70)  # 2026-09-11: no partition yet on a fresh store (DEFAULT)
    partitions.ensure_months(_unserialised(pg_store), when, ahead=1)  # September, October
    ev = Events(when)
    first = pg_gov.ingestor.ingest_objects([ev.command("c1", "proposed"), ev.command("c1", "approved")])
    assert first.accepted == 2
    assert _where(pg_store, "c1", "proposed") == "command_events_p2026_09"
    stored = _events(pg_store)
    # the same keys stamped a month later (another partition), far back (the DEFAULT), and twice in a batch
    again = [ev.command("c1", "proposed", at=when + timedelta(days=30)),
             ev.command("c1", "approved", at=datetime(2024, 1, 5, tzinfo=UTC)),
             ev.command("c2", "proposed", at=when + timedelta(days=30)),
             ev.command("c2", "proposed", at=when)]
    report = pg_gov.ingestor.ingest_objects(again)
    assert report.accepted == 1, report
    after = _events(pg_store)
    assert after[:2] == stored and len(after) == 3
    assert _where(pg_store, "c2", "proposed") == "command_events_p2026_10"
    with pg_store.write() as conn:  # the direct insert path (demo, bulk loads) filters the same way
        assert events_repo.insert_command_events(conn, [
            {"command_id": "c1", "command_type": "restart_service", "status": "proposed", "autonomous": True,
             "at": when + timedelta(days=31), "ingested_at": when}]) == 0
    assert _events(pg_store) == after
    assert _rollups(pg_store) == _rebuilt(pg_store)


def test_late_and_future_events_wait_in_the_default_and_move_out_when_their_month_is_made(pg_gov, pg_store):
    late = datetime(2026, 5, 10, tzinfo=UTC)
    ahead = datetime(2027, 6, 3, tzinfo=UTC)  # beyond the months made ahead, with the clock moved there
    pg_gov.ingestor.ingest_objects(Events(late).lifecycle("late", ["proposed", "approved", "succeeded"]))
    future_gov = Governance(pg_store, ManualClock(ahead + timedelta(minutes=1)))
    future_gov.ingestor.ingest_objects([Events(ahead).command("soon", "proposed")])
    assert _where(pg_store, "late", "approved") == partitions.DEFAULT_PARTITION
    assert _where(pg_store, "soon", "proposed") == partitions.DEFAULT_PARTITION
    stored, sums = _events(pg_store), _rollups(pg_store)

    assert partitions.ensure_months(_unserialised(pg_store), late, ahead=0) == ["command_events_p2026_05"]
    assert partitions.ensure_months(_unserialised(pg_store), late, ahead=0) == []  # made already
    assert _where(pg_store, "late", "approved") == "command_events_p2026_05"
    assert _where(pg_store, "soon", "proposed") == partitions.DEFAULT_PARTITION
    made = partitions.ensure_months(_unserialised(pg_store), ahead - timedelta(days=40), ahead=1)
    assert made == ["command_events_p2027_04", "command_events_p2027_05"]  # not June yet
    assert partitions.ensure_months(_unserialised(pg_store), ahead, ahead=0) == ["command_events_p2027_06"]
    assert _where(pg_store, "soon", "proposed") == "command_events_p2027_06"
    assert _events(pg_store) == stored and _rollups(pg_store) == sums
    # the moved rows keep their key's protection: a resend stores nothing
    assert pg_gov.ingestor.ingest_objects([Events(late).command("late", "approved")]).accepted == 0
    assert _events(pg_store) == stored
    with pg_store.read() as conn:
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {partitions.DEFAULT_PARTITION}").scalar() == 0


# --- retention ------------------------------------------------------------------------------------


def _spread(gov: Governance, store) -> None:
    """Events from June to November 2026 in monthly partitions, with commands across month ends, one
    named by a recent incident, and the rest of the kinds prune deletes."""
    partitions.ensure_months(_unserialised(store), datetime(2026, 6, 1, tzinfo=UTC), ahead=5)
    objects = []
    start = datetime(2026, 6, 1, tzinfo=UTC)
    for i in range(400):  # every 11 hours from June 1st: to early December
        at = start + timedelta(hours=11 * i, minutes=i % 60)
        statuses = ["proposed", "approved", "succeeded" if i % 3 else "failed"]
        for j, status in enumerate(statuses):
            objects.append(Events(at).command(f"c{i}", status, type=f"t{i % 4}", autonomous=i % 2 == 0,
                                              at=at + timedelta(hours=9 * j)))  # 18 h: many cross a month's end
    objects = [o for o in objects if o["at"] < "2026-11-20T12"]
    ev = Events(T0 - timedelta(hours=2))
    objects += [ev.incident("inc-kept", "critical", command_id="c3"),       # c3 is on June 2nd: kept
                Events(datetime(2026, 6, 5, tzinfo=UTC)).incident("inc-old", "low", command_id="c9")]
    report = gov.ingestor.ingest_objects(objects)
    assert not report.errors, report.errors[:3]


def test_a_prune_drops_whole_months_and_the_rollups_equal_a_rebuild(pg_gov, pg_store):
    _spread(pg_gov, pg_store)
    before = T0 - timedelta(days=90)  # 2026-08-22: June and July go whole, August is the boundary
    stored = _events(pg_store)
    expected = [e for e in stored if e[5] >= before or e[1] == "c3"]
    removed = pg_gov.prune(OPERATOR, timedelta(days=90))
    assert removed["command_events"] == len(stored) - len(expected)
    assert _events(pg_store) == expected
    assert _rollups(pg_store) == _rebuilt(pg_store)
    with pg_store.read() as conn:
        left = partitions.partitions(conn)
        assert "command_events_p2026_06" not in left and "command_events_p2026_07" not in left
        assert "command_events_p2026_08" in left  # the boundary month: batched deletes
        for start, end in ((before, T0), (T0 - timedelta(days=30), T0), (before - timedelta(days=40), T0)):
            assert events_repo.command_counts_split(conn, start, end) == \
                events_repo.scan_command_counts_split(conn, start, end)
            assert events_repo.command_counts_by_type(conn, start, end) == \
                events_repo.scan_command_counts_by_type(conn, start, end)
    assert _where(pg_store, "c3", "approved") == partitions.DEFAULT_PARTITION  # kept, copied back
    entry = pg_gov.audit_entries(limit=1, search="db.prune")[0]
    dropped = entry["details"]["partitions"]["dropped"]
    assert [d["partition"] for d in dropped] == ["command_events_p2026_06", "command_events_p2026_07"]
    assert sum(d["kept"] for d in dropped) == 3
    assert entry["details"]["removed"]["command_events"] == removed["command_events"]
    assert len(pg_gov.audit_entries(limit=100, search="db.prune")) == 1  # one entry for the whole prune
    again = pg_gov.prune(OPERATOR, timedelta(days=90))
    assert again["command_events"] == 0 and _events(pg_store) == expected


def test_an_engage_during_a_partition_drop_succeeds_within_a_second(pg_gov, pg_store, postgres_url, clock):
    """A backtest-like reader holds command_events, so the drop's DETACH waits, gives way and tries again
    for a few seconds: the kill switch, engaged meanwhile again and again from another Store, never
    waits for it (the drop holds the events lock only, never the store-wide write lock)."""
    for role in ("incident-commander", "on-call"):
        pg_gov.grant_role(OPERATOR, OPERATOR, role)
    old = datetime(2026, 7, 1, tzinfo=UTC)
    partitions.ensure_months(_unserialised(pg_store), old, ahead=0)
    n = 100_000
    with pg_store.write() as conn:
        conn.execute(sa.insert(CMD), [
            {"command_id": f"old-{i}", "command_type": f"t{i % 7}", "status": "succeeded", "autonomous": True,
             "at": old + timedelta(seconds=20 * i), "ingested_at": old + timedelta(seconds=20 * i),
             "judged_on_arrival": False} for i in range(n)])
        rollups.rebuild(conn)
    reader_has_it, reader_done = threading.Event(), threading.Event()

    def reader() -> None:  # a long read of the events: the DETACH's ACCESS EXCLUSIVE waits behind it
        with pg_store.read() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM command_events").scalar()
            reader_has_it.set()
            time.sleep(2.5)
        reader_done.set()

    operator = Governance(Store(postgres_url), clock)
    pruned: list = []
    failed: list[BaseException] = []

    def prune() -> None:
        try:
            pruned.append(pg_gov.prune(OPERATOR, timedelta(days=90)))
        except BaseException as exc:  # pragma: no cover - reported below
            failed.append(exc)

    worker = threading.Thread(target=prune)
    # not the worker's earlier tests' objects (tests/gc_pauses.py); frozen before the reader starts its 2.5 s,
    # which the freeze's collection would otherwise eat into
    with frozen_heap() as pauses:
        threading.Thread(target=reader).start()
        assert reader_has_it.wait(10)
        started = time.perf_counter()
        worker.start()
        latencies = engages_while(worker, operator, OPERATOR, "drop", rounds=60, join_s=300)
    took = time.perf_counter() - started
    assert not failed, failed
    assert reader_done.is_set()
    print(f"prune with a partition drop of {n:,} rows took {took:.2f} s; {len(latencies)} engages during it, "
          f"slowest {max(latencies) * 1000:.0f} ms")
    assert len(latencies) >= 3, latencies
    assert max(latencies) < 1.0, (latencies, f"slowest collections: {slowest(pauses)}")
    assert pruned and pruned[0]["command_events"] == n
    entry = pg_gov.audit_entries(limit=1, search="db.prune")[0]
    assert [d["partition"] for d in entry["details"]["partitions"]["dropped"]] == ["command_events_p2026_07"]
    assert _rollups(pg_store) == set()


def test_a_drop_that_never_gets_its_lock_gives_way_and_leaves_the_month_to_the_batched_deletes(pg_gov, pg_store):
    july = datetime(2026, 7, 1, tzinfo=UTC)
    partitions.ensure_months(_unserialised(pg_store), july, ahead=0)
    pg_gov.ingestor.ingest_objects(Events(july + timedelta(days=3)).lifecycle("c1", ["proposed", "succeeded"]))
    stored = _events(pg_store)
    with pg_store.read() as reader:  # holds command_events (ACCESS SHARE) until the end of the block
        reader.execute(sa.select(sa.func.count()).select_from(CMD)).scalar_one()
        t0 = time.perf_counter()
        got = partitions.drop_older(_unserialised(pg_store), datetime(2026, 8, 1, tzinfo=UTC), attempts=3,
                                    sleep=lambda _s: None)
        waited = time.perf_counter() - t0
        assert got == []
        assert waited < 3 * (partitions.LOCK_TIMEOUT_MS / 1000) + 2.0
    assert _events(pg_store) == stored and _rollups(pg_store) == _rebuilt(pg_store)
    with pg_store.read() as conn:
        assert "command_events_p2026_07" in partitions.partitions(conn)
    # the reader gone, the next prune drops it
    assert pg_gov.prune(OPERATOR, timedelta(days=90))["command_events"] == 2
    with pg_store.read() as conn:
        assert "command_events_p2026_07" not in partitions.partitions(conn)
    assert _rollups(pg_store) == _rebuilt(pg_store) == set()



def test_ingest_while_a_prune_makes_and_drops_months_loses_nothing(pg_gov, pg_store, clock):
    """Ingest of this month's events runs while the prune makes this month's partition (moving the rows
    the DEFAULT holds of it) and drops two old months: every event is stored once, in its month's
    partition, and the rollups equal a rebuild."""
    partitions.ensure_months(_unserialised(pg_store), datetime(2026, 6, 1, tzinfo=UTC), ahead=1)
    old = Events(datetime(2026, 6, 20, tzinfo=UTC))
    pg_gov.ingestor.ingest_objects([e for i in range(1500) for e in old.lifecycle(
        f"old-{i}", ["proposed", "succeeded"], at=old.base + timedelta(minutes=40 * i))])
    recent = Events(T0 - timedelta(hours=3))
    pg_gov.ingestor.ingest_objects([recent.command(f"first-{i}", "proposed") for i in range(200)])
    failed: list[BaseException] = []
    batches = 40

    def ingest() -> None:
        try:
            for b in range(batches):
                pg_gov.ingestor.ingest_objects([e for i in range(25) for e in recent.lifecycle(
                    f"live-{b}-{i}", ["proposed", "approved"], at=recent.base + timedelta(seconds=b * 25 + i))])
        except BaseException as exc:  # pragma: no cover - reported below
            failed.append(exc)

    worker = threading.Thread(target=ingest)
    worker.start()
    removed = pg_gov.prune(OPERATOR, timedelta(days=90))
    worker.join(120)
    assert not failed, failed
    assert removed["command_events"] == 3000
    with pg_store.read() as conn:
        left = partitions.partitions(conn)
        assert "command_events_p2026_11" in left and "command_events_p2026_06" not in left
        assert conn.exec_driver_sql("SELECT count(*) FROM command_events").scalar() == 200 + batches * 50
        assert conn.exec_driver_sql("SELECT count(*) FROM command_events_p2026_11").scalar() == 200 + batches * 50
    assert _rollups(pg_store) == _rebuilt(pg_store)


def test_the_daily_retention_job_makes_the_coming_months_and_drops_old_ones(pg_gov, pg_store, clock):
    from engine.jobs import GovconScheduler
    partitions.ensure_months(_unserialised(pg_store), datetime(2026, 6, 1, tzinfo=UTC), ahead=0)
    pg_gov.ingestor.ingest_objects(Events(datetime(2026, 6, 9, tzinfo=UTC)).lifecycle("c1", ["proposed", "failed"]))
    clock.advance(timedelta(days=70))  # 2027-01-29: January to March are made; June is past 90 days
    assert GovconScheduler(pg_gov, "test", retention_days=90).prune()["command_events"] == 2
    with pg_store.read() as conn:
        made = set(partitions.partitions(conn))
    assert {"command_events_p2027_01", "command_events_p2027_02", "command_events_p2027_03"} <= made
    assert "command_events_p2026_06" not in made
    entry = pg_gov.audit_entries(limit=1, search="db.prune")[0]
    assert entry["actor"] == "scheduler"
    assert [d["partition"] for d in entry["details"]["partitions"]["dropped"]] == ["command_events_p2026_06"]
    assert "command_events_p2027_03" in entry["details"]["partitions"]["made"]
