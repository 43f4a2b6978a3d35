"""The hourly rollups (storage/rollups.py) answer exactly what a scan of the raw events answers, on both
stores: whatever the arrival order, the duplicates re-sent, the batching, commands whose statuses span
hours (and types and autonomies), windows on and off the hour, and after a prune. A set-based rebuild
from the raw events gives the same table as the incremental upkeep."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.ingest import Ingestor
from storage import events_repo, maintenance, rollups, tables
from tests.conftest import T0

BASE = T0 - timedelta(hours=12)
STATUSES = list(rollups.STATUSES)

event = st.tuples(st.integers(0, 7),                      # command
                  st.sampled_from(STATUSES),
                  st.integers(0, 11 * 3600 * 1000),         # ms after BASE: 11 hours
                  st.sampled_from(["restart", "scale", "deploy"]),
                  st.booleans())
window = st.tuples(st.integers(-2 * 3600, 12 * 3600), st.integers(1, 13 * 3600), st.booleans())


def _objects(events):
    return [{"kind": "command", "id": f"c{c}", "type": t, "status": s, "autonomous": a,
             "at": (BASE + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")}
            for c, s, ms, t, a in events]


def _reset(store):
    with store.write() as conn:
        conn.execute(sa.delete(tables.command_events))
        conn.execute(sa.delete(tables.command_rollups))


def _table(store) -> set[tuple]:
    r = tables.command_rollups
    with store.read() as conn:
        return set(conn.execute(sa.select(r.c.command_type, r.c.hour, r.c.autonomous, r.c.status,
                                          r.c.prev_hour, r.c.n).where(r.c.n != 0)).all())


def _check_windows(store, windows):
    with store.read() as conn:
        for offset, length, aligned in windows:
            start = BASE + timedelta(seconds=offset)
            if aligned:
                start = rollups.hour_start(rollups.hour_of(start))
                length = max(3600, length // 3600 * 3600)
            end = start + timedelta(seconds=length)
            assert events_repo.command_counts_split(conn, start, end) == \
                events_repo.scan_command_counts_split(conn, start, end), (start, end)
            assert events_repo.command_counts_by_type(conn, start, end) == \
                events_repo.scan_command_counts_by_type(conn, start, end), (start, end)
            for kw in ({"autonomous_only": True}, {"command_type": "scale"}):
                assert events_repo.command_counts(conn, start, end, **kw) == \
                    events_repo.scan_command_counts(conn, start, end, **kw), (start, end, kw)
            assert events_repo.hourly_command_counts(conn, start, end) == \
                events_repo.scan_hourly_command_counts(conn, start, end), (start, end)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event, min_size=1, max_size=40), data=st.data(),
       windows=st.lists(window, min_size=1, max_size=4), prune_hours=st.integers(1, 11))
def test_rollup_answers_equal_a_scan_of_the_raw_events(gov, clock, events, data, windows, prune_hours):
    store = gov.store
    _reset(store)
    objects = _objects(events)
    # out of order, with duplicates re-sent, in batches of any size
    order = data.draw(st.permutations(objects))
    resent = data.draw(st.lists(st.sampled_from(objects), max_size=10))
    ingestor = Ingestor(store, clock, batch_size=data.draw(st.sampled_from([1, 3, 1000])))
    ingestor.ingest_objects(order)
    ingestor.ingest_objects(resent)
    _check_windows(store, windows)
    incremental = _table(store)
    with store.write() as conn:
        rollups.rebuild(conn)
    assert _table(store) == incremental
    # a prune takes pruned events out of the rollups (and gives a kept event whose predecessor went a
    # first event in its stead)
    cut = rollups.hour_start(rollups.hour_of(BASE)) + timedelta(hours=prune_hours, minutes=data.draw(
        st.integers(0, 59)))
    if data.draw(st.booleans()):
        with store.write() as conn:
            maintenance.prune(conn, cut)
    else:
        maintenance.prune_in_batches(store.write, store.dialect, cut, sleep=lambda _s: None)
    _check_windows(store, windows)
    pruned = _table(store)
    with store.write() as conn:
        rollups.rebuild(conn)
    assert _table(store) == pruned


def test_a_command_spanning_hours_counts_once_in_a_window_over_them(gov, clock):
    store = gov.store
    ingest = Ingestor(store, clock).ingest_objects
    ingest(_objects([(1, "succeeded", 3 * 3600 * 1000 + 5, "restart", True)]))
    ingest(_objects([(1, "proposed", 1 * 3600 * 1000 + 7, "restart", True)]))  # arrives after, happened before
    start = rollups.hour_start(rollups.hour_of(BASE))
    with store.read() as conn:
        every, auto = events_repo.command_counts_split(conn, start, start + timedelta(hours=6))
        assert every["total"] == auto["total"] == 1
        assert every["proposed"] == every["succeeded"] == 1
        # only the later event inside: the command still counts once
        every, _ = events_repo.command_counts_split(conn, start + timedelta(hours=2), start + timedelta(hours=6))
        assert every["total"] == 1


# one batch of keys never seen before (the upkeep's column-at-a-time path): commands of one type and
# autonomy and commands mixing them, statuses spread over hours in any order
fresh_event = st.tuples(st.integers(0, 30), st.sampled_from(STATUSES), st.integers(0, 11 * 3600 * 1000),
                        st.sampled_from(["restart", "scale"]), st.booleans())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(fresh_event, min_size=1, max_size=120, unique_by=lambda e: (e[0], e[1])),
       uniform=st.booleans(), windows=st.lists(window, min_size=1, max_size=3))
def test_a_batch_of_new_commands_keeps_the_rollups_a_rebuild_makes(gov, clock, events, uniform, windows):
    store = gov.store
    _reset(store)
    if uniform:  # every command of one type and autonomy (its three chains are one)
        events = [(c, s, ms, "restart" if c % 2 else "scale", c % 3 == 0) for c, s, ms, _, _ in events]
    Ingestor(store, clock, batch_size=1000).ingest_objects(_objects(events))
    incremental = _table(store)
    with store.write() as conn:
        rollups.rebuild(conn)
    assert _table(store) == incremental
    _check_windows(store, windows)


def _generic_plan(conn, sql: str, params) -> str:
    """PostgreSQL's generic plan of a statement the driver ran (what psycopg's prepared statements get after
    their fifth execution): PREPAREd with $n placeholders, EXPLAINed with the parameters as literals."""
    n = iter(range(1, 10_000))
    prepared = sql.replace("%s", "{}").format(*(f"${next(n)}" for _ in params))

    def literal(value) -> str:
        if isinstance(value, list):
            return "ARRAY[" + ", ".join(literal(v) for v in value) + "]::text[]"
        return "'" + str(value).replace("'", "''") + "'"
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql(f"PREPARE lookup AS {prepared}".replace("%", "%%"))
    try:
        args = ", ".join(literal(v) for v in params)
        return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN EXECUTE lookup({args})".replace("%", "%%")))
    finally:
        conn.exec_driver_sql("DEALLOCATE lookup")


STALE_STORED = 10_000


def test_an_ingest_batch_reads_stored_events_by_the_index_when_statistics_are_stale(postgres_url, clock):
    """Filling a fresh PostgreSQL store: before autovacuum has analysed command_events, each batch's lookup
    of what its commands had stored must still read the unique index. With one parameter per id the
    generic plan was a sequential scan comparing every row with every id (10 s per 20,000-event batch at
    20,000 stored, 31 s at 60,000)."""
    from storage.store import Store
    store = Store(postgres_url)
    try:
        with store.write() as conn:  # the statistics stay those of an empty table
            # 'command_events'::regclass resolves through this test's search_path: other tests' schemas,
            # on the same server at the same time, have partitions of their own months.
            for (name,) in conn.exec_driver_sql(
                    "SELECT inhrelid::regclass::text FROM pg_inherits "
                    "WHERE inhparent = 'command_events'::regclass"):
                conn.exec_driver_sql(f"ALTER TABLE {name} SET (autovacuum_enabled = false)")
        old = T0 - timedelta(days=100)  # the DEFAULT partition, as a history import fills it
        rows = [{"command_id": f"c{i}", "command_type": "restart", "status": "succeeded", "autonomous": True,
                 "at": old + timedelta(seconds=i), "ingested_at": old} for i in range(STALE_STORED)]
        with store.write() as conn:
            events_repo.insert_command_events(conn, rows)
        seen: list[tuple[str, object]] = []

        def note(conn, cursor, statement, parameters, context, executemany):
            if "FROM command_events WHERE command_id" in statement and not executemany:
                seen.append((statement, parameters))
        with store.write() as conn:
            sa.event.listen(conn, "before_cursor_execute", note)
            rollups.InsertTracker(conn, [dict(r, command_id=f"c{i}", status="failed") for i, r in enumerate(rows)])
            sa.event.remove(conn, "before_cursor_execute", note)
            assert seen, "the tracker read nothing"
            for statement, params in seen:
                plan = _generic_plan(conn, statement, list(params))
                assert "Seq Scan on command_events_default" not in plan and "Index" in plan, plan
    finally:
        store.dispose()
