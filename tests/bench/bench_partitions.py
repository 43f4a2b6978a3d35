"""Retention on PostgreSQL (issue 16 pt 2): the prune of half of a 1,000,000-event store, by dropping
whole monthly partitions against the batched deletes (the same rows in the DEFAULT partition, which is
what a store without month partitions gets), with a kill switch engaged again and again from another
Store meanwhile: the prune's time and the longest an engage waited.

`GOVCON_TEST_POSTGRES_URL=… .venv/bin/python -m pytest -q -s -n 0 tests/bench/bench_partitions.py`
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engine.clock import ManualClock
from engine.governance import Governance
from storage import partitions, rollups
from storage.store import Store
from tests.conftest import OPERATOR, PG_URL, _drop_schema, _postgres_schema_url, migrated_to, postgres_schema

EVENTS = 1_000_000
START = datetime(2026, 6, 1, tzinfo=UTC)  # four months: June and July are the older half
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
OLDER_THAN = NOW - datetime(2026, 8, 1, tzinfo=UTC)


def _build(url: str, *, monthly: bool) -> Governance:
    store = Store(url)
    gov = Governance(store, ManualClock(NOW))
    gov.init_store(OPERATOR, phase_started=NOW - timedelta(days=200))
    for role in ("incident-commander", "on-call"):
        gov.grant_role(OPERATOR, OPERATOR, role)
    if monthly:
        partitions.ensure_months(lambda: store.write(serialise=False), START, ahead=3)
    commands = EVENTS // 3
    step = (122 * 86400) / commands  # seconds between commands over June to September
    with store.write() as conn:
        conn.exec_driver_sql(
            "INSERT INTO command_events (command_id, command_type, status, autonomous, at, ingested_at, "
            "judged_on_arrival) SELECT 'c' || (g / 3), 't' || ((g / 3) %% 7), "
            "(ARRAY['proposed', 'approved', 'succeeded'])[g %% 3 + 1], (g / 3) %% 2 = 0, "
            "%(start)s + make_interval(secs => (g / 3) * %(step)s + (g %% 3) * 60), "
            "%(start)s + make_interval(secs => (g / 3) * %(step)s + (g %% 3) * 60), false "
            "FROM generate_series(0, %(n)s - 1) g",
            {"start": START.replace(tzinfo=None), "step": step, "n": commands * 3})
        rollups.rebuild(conn)
        conn.exec_driver_sql("ANALYZE command_events")
    return gov


def _prune_with_engages(gov: Governance, url: str) -> dict:
    operator = Governance(Store(url), gov.clock)
    out: dict = {}

    def prune() -> None:
        t0 = time.perf_counter()
        out["removed"] = gov.prune(OPERATOR, OLDER_THAN)["command_events"]
        out["took"] = time.perf_counter() - t0

    worker = threading.Thread(target=prune)
    worker.start()
    waits: list[float] = []
    try:
        while worker.is_alive():
            t0 = time.perf_counter()
            assert operator.overrides.kill_switch("engage", OPERATOR, "bench").changed
            waits.append(time.perf_counter() - t0)
            operator.overrides.kill_switch("release", OPERATOR, "bench")
            time.sleep(0.05)
        worker.join()
    finally:
        operator.close()
    out["engages"] = len(waits)
    out["max_wait"] = max(waits) if waits else 0.0
    out["median_wait"] = statistics.median(waits) if waits else 0.0
    return out


@pytest.mark.skipif(not PG_URL, reason="GOVCON_TEST_POSTGRES_URL not set")
def test_prune_half_of_a_million_events_partition_drop_against_batched_delete():
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    figures = {}
    try:
        for monthly in (False, True):
            schema = "b_" + uuid.uuid4().hex[:12]
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            url = _postgres_schema_url(schema)
            try:
                t0 = time.perf_counter()
                gov = _build(url, monthly=monthly)
                built = time.perf_counter() - t0
                got = _prune_with_engages(gov, url)
                got["built"] = built
                with gov.store.read() as conn:
                    got["left"] = conn.exec_driver_sql("SELECT count(*) FROM command_events").scalar()
                got["events"] = got["left"] + got["removed"]
                gov.store.dispose()
                figures["partition drop" if monthly else "batched delete"] = got
            finally:
                _drop_schema(admin, schema)
    finally:
        admin.dispose()
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for name, f in figures.items():
        print(f"{name}: built in {f['built']:.0f} s; prune removed {f['removed']:,} of {f['events']:,} "
              f"({f['left']:,} left) in {f['took']:.2f} s; {f['engages']} engages, longest wait "
              f"{f['max_wait'] * 1000:.0f} ms, median {f['median_wait'] * 1000:.0f} ms")
    drop, batched = figures["partition drop"], figures["batched delete"]
    print(f"ratio batched / drop: {batched['took'] / drop['took']:.1f}x")
    assert drop["removed"] == batched["removed"] and drop["left"] == batched["left"]
    assert max(drop["max_wait"], batched["max_wait"]) < 1.0


@pytest.mark.skipif(not PG_URL, reason="GOVCON_TEST_POSTGRES_URL not set")
def test_migration_0023_of_a_million_event_store():
    """How long the upgrade converting command_events takes (the store is unavailable meanwhile)."""
    with postgres_schema("b_") as url:
        _migrate_a_million(url)


def _migrate_a_million(url: str) -> None:
    from storage.migrate import head_revision
    store = Store(url, apply_migrations=False)
    try:
        with migrated_to(store, "0022") as conn:
            conn.exec_driver_sql(
                "INSERT INTO command_events (command_id, command_type, status, autonomous, at, ingested_at, "
                "judged_on_arrival) SELECT 'c' || (g / 3), 't' || ((g / 3) %% 7), "
                "(ARRAY['proposed', 'approved', 'succeeded'])[g %% 3 + 1], (g / 3) %% 2 = 0, "
                "%(start)s + make_interval(secs => (g / 3) * %(step)s), "
                "%(start)s + make_interval(secs => (g / 3) * %(step)s), false "
                "FROM generate_series(0, %(n)s - 1) g",
                {"start": START.replace(tzinfo=None), "step": (180 * 86400) / (EVENTS // 3), "n": EVENTS})
            rollups.rebuild(conn)
        t0 = time.perf_counter()
        assert store.migrate() == ("0022", head_revision())
        took = time.perf_counter() - t0
        with store.read() as conn:
            n = conn.exec_driver_sql("SELECT count(*) FROM command_events").scalar()
            months = len(partitions.partitions(conn))
        load = os.getloadavg()
        print(f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        print(f"migration 0023 of {n:,} events over 180 days: {took:.1f} s, {months} partitions")
        assert n == EVENTS
    finally:
        store.dispose()


@pytest.mark.skipif(not PG_URL, reason="GOVCON_TEST_POSTGRES_URL not set")
def test_ingest_into_the_partitioned_table_against_the_plain_one():
    """The same events through the Ingestor (batches of 1,000, a tenth of them resent), into a store at
    0022 (command_events one table) and one at head (partitioned), interleaved rounds, the same code."""
    from engine.ingest import Ingestor
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    schemas, stores = [], {}
    try:
        for kind in ("plain", "partitioned"):
            schema = "b_" + uuid.uuid4().hex[:12]
            schemas.append(schema)
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            url = _postgres_schema_url(schema)
            store = Store(url, apply_migrations=kind == "partitioned")
            if kind == "plain":
                with migrated_to(store, "0022"):
                    pass
            else:  # the events' month has its partition, as the retention job makes it
                partitions.ensure_months(lambda store=store: store.write(serialise=False), NOW, ahead=0)
            stores[kind] = store
        clock = ManualClock(NOW)
        times: dict[str, list[float]] = {k: [] for k in stores}
        for rnd in range(6):
            for kind, store in (stores.items() if rnd % 2 == 0 else reversed(list(stores.items()))):
                ingestor = Ingestor(store, clock, batch_size=1000)
                base = NOW - timedelta(days=3) + timedelta(hours=rnd)
                objs = [{"kind": "command", "id": f"r{rnd}-c{i // 3}", "type": f"t{i % 7}",
                         "status": ("proposed", "approved", "succeeded")[i % 3], "autonomous": True,
                         "at": (base + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")}
                        for i in range(10_000)]
                objs += objs[:1000]  # resent
                t0 = time.perf_counter()
                for i in range(0, len(objs), 1000):
                    ingestor.ingest_objects(objs[i:i + 1000])
                times[kind].append(time.perf_counter() - t0)
        load = os.getloadavg()
        print(f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        med = {k: statistics.median(v[1:]) for k, v in times.items()}
        for kind, v in times.items():
            print(f"{kind}: 11,000 events (1,000 resent) in batches of 1,000: median {med[kind]:.2f} s "
                  f"({11_000 / med[kind]:,.0f} events/s) over {len(v) - 1} rounds after one warm-up")
        print(f"ratio partitioned / plain: {med['partitioned'] / med['plain']:.2f}")
        for store in stores.values():
            with store.read() as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM command_events").scalar() == 60_000
    finally:
        for store in stores.values():
            store.dispose()
        for schema in schemas:
            _drop_schema(admin, schema)
        admin.dispose()
