"""Batch ingest on both stores: idempotent on (id, status), bad lines reported and skipped, good lines
around them stored; plus a property test that arrival order, duplicates and batching never matter."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import ManualClock
from engine.governance import Governance
from engine.ingest import Ingestor
from storage import events_repo, tables
from storage.store import Store
from tests.conftest import T0
from tests.integration.conftest import Events, jsonl

EVENT_TABLES = [tables.command_events, tables.incidents, tables.safety_events, tables.eval_coverage]


def counts(store) -> dict[str, int]:
    with store.read() as conn:
        return events_repo.count_rows(conn, EVENT_TABLES)


def command_keys(store) -> set[tuple[str, str]]:
    t = tables.command_events
    with store.read() as conn:
        return set(conn.execute(sa.select(t.c.command_id, t.c.status)).all())


def mixed(ev: Events) -> list[dict]:
    return [*ev.lifecycle("cmd-1", ["proposed", "approved", "succeeded"]),
            ev.command("cmd-2", "failed"),
            ev.incident("inc-1", "high", "cmd-2"),
            ev.safety("constraint_violation"),
            ev.coverage(45, 50)]


def test_every_kind_is_stored(gov, ev, ingest):
    report = ingest(mixed(ev))
    assert (report.accepted, report.duplicate, report.rejected, report.errors) == (7, 0, 0, [])
    assert report.kinds == {"command": 4, "incident": 1, "safety": 1, "eval_coverage": 1}
    assert counts(gov.store) == {"command_events": 4, "incidents": 1, "safety_events": 1, "eval_coverage": 1}


def test_reingesting_the_same_file_stores_nothing_new(gov, ev, ingest, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl(mixed(ev)))
    with path.open("rb") as f:
        first = gov.ingestor.ingest_lines(f)
    before = counts(gov.store)
    with path.open("rb") as f:
        second = gov.ingestor.ingest_lines(f)
    assert (first.accepted, first.duplicate) == (7, 0)
    assert (second.accepted, second.duplicate, second.rejected) == (0, 7, 0)
    assert counts(gov.store) == before


def test_duplicates_inside_one_file_are_stored_once(gov, ev, ingest):
    events = [ev.command("cmd-1", "proposed"), ev.command("cmd-1", "proposed"),
              ev.command("cmd-1", "succeeded"),
              # same (id, status) at another time: still the same event
              ev.command("cmd-1", "succeeded", at=ev.base + timedelta(minutes=5)),
              # same (id, status), another type: a conflict, reported; the stored event is kept
              ev.command("cmd-1", "succeeded", type="other"),
              ev.incident("inc-1", "low"), ev.incident("inc-1", "low"),
              ev.safety("emergency_abort"), ev.safety("emergency_abort"),
              ev.coverage(1, 2), ev.coverage(1, 2)]
    report = ingest(events)
    assert (report.accepted, report.duplicate, report.rejected, report.conflict) == (5, 5, 0, 1)
    assert [(e.line, e.field, e.conflict) for e in report.errors] == [(5, "type", True)]
    assert command_keys(gov.store) == {("cmd-1", "proposed"), ("cmd-1", "succeeded")}
    t = tables.command_events
    with gov.store.read() as conn:
        kept = conn.execute(sa.select(t.c.command_type, t.c.at).where(t.c.status == "succeeded")).one()
    assert kept == ("restart_service", ev.base)  # the first one wins


def test_duplicates_across_batches_are_stored_once(gov, ev):
    ingestor = Ingestor(gov.store, gov.clock, batch_size=3)
    events = [ev.command(f"cmd-{i % 4}", "succeeded") for i in range(10)]
    report = ingestor.ingest_lines(jsonl(events).splitlines())
    assert (report.accepted, report.duplicate) == (4, 6)
    assert counts(gov.store)["command_events"] == 4


def good(n: int) -> str:
    return json.dumps({"kind": "command", "id": f"good-{n}", "type": "t", "status": "proposed",
                       "at": "2026-11-20T10:00:00Z"})


AT = '"at": "2026-11-20T10:00:00Z"'
#: (the line, the field it names (None: the line is not JSON), words in the message, what it shows)
BAD_LINES = [
    ('{"kind": "command", "id": "bad", ', None, "not valid JSON", "not JSON"),
    ('{"kind": "telemetry", "id": "bad", ' + AT + '}', "kind", "unknown kind", "unknown kind"),
    ('{"kind": "command", "id": "bad", "type": "t", "status": "exploded", ' + AT + '}',
     "status", "unknown status", "unknown status"),
    ('{"kind": "incident", "id": "bad", "severity": "apocalyptic", ' + AT + '}',
     "severity", "unknown severity", "unknown severity"),
    ('{"kind": "command", "id": "bad", "type": "t", "status": "failed", "at": "last tuesday"}',
     "at", "not an ISO 8601 timestamp", "bad timestamp"),
    ('{"kind": "command", "id": "bad", "type": "t", "status": "failed", "at": "2026-11-20T10:00:00"}',
     "at", "no time zone", "timestamp without a zone"),
    ('{"kind": "command", "id": "bad", "status": "failed", ' + AT + '}', "type", "is missing", "missing field"),
    ('{"kind": "eval_coverage", "covered": 9, "total": 5, ' + AT + '}', "covered", "more than total",
     "coverage over total"),
    # lines that once reached the database and failed their whole batch (the good lines with it)
    ('{"kind": "command", "id": "a\\u0000b", "type": "t", "status": "failed", ' + AT + '}',
     "id", "NUL", "NUL in an id"),
    ('{"kind": "command", "id": "bad", "type": "t\\ud800", "status": "failed", ' + AT + '}',
     "type", "lone surrogate", "lone surrogate"),
    ('{"kind": "eval_coverage", "covered": 1, "total": 100000000000000000000, ' + AT + '}',
     "total", "too large", "count out of range"),
    ('{"kind": "command", "id": "bad", "type": "t", "status": "failed", "at": "0001-01-01T00:00:00+01:00"}',
     "at", "out of range", "timestamp out of range"),
    ("[" * 30_000 + "]" * 30_000, None, "nested too deeply", "deeply nested"),  # under the line cap
]


@pytest.mark.parametrize("batch_size", [2, 20_000])
def test_each_malformed_line_is_reported_and_the_good_lines_around_it_kept(gov, batch_size):
    """good, bad, good, bad, …, good, with a blank line after the first: each bad line is reported with
    its line number (blank lines count), field and reason; nothing of it is stored; every good line is."""
    lines = [good(0), ""]
    for i, case in enumerate(BAD_LINES, start=1):
        lines += [case[0], good(i)]
    report = Ingestor(gov.store, gov.clock, batch_size=batch_size).ingest_lines(jsonl(lines).splitlines())
    assert (report.accepted, report.duplicate, report.rejected) == (len(BAD_LINES) + 1, 0, len(BAD_LINES))
    assert len(report.errors) == len(BAD_LINES)
    for i, ((_, field, words, name), error) in enumerate(zip(BAD_LINES, report.errors, strict=False)):
        line = 3 + 2 * i
        assert (error.line, error.field) == (line, field), name
        assert words in error.message, name
        assert str(error).startswith(f"line {line}" + (f", field {field}:" if field else ":")), name
        assert report.to_json()["errors"][i] == {"line": line, "field": field, "message": error.message}
    assert command_keys(gov.store) == {(f"good-{i}", "proposed") for i in range(len(BAD_LINES) + 1)}
    assert counts(gov.store) == {"command_events": len(BAD_LINES) + 1, "incidents": 0, "safety_events": 0,
                                 "eval_coverage": 0}


def test_ingest_objects_reports_item_indexes(gov, ev):
    report = gov.ingestor.ingest_objects([ev.command("c", "proposed"), {"kind": "command"}, "nope"])
    assert report.accepted == 1
    assert [(e.line, e.field) for e in report.errors] == [(2, "id"), (3, "event")]


def test_a_batch_listener_hears_only_batches_that_stored_something(gov, ev):
    heard = []
    gov.ingestor.listeners.append(lambda report: heard.append(report.accepted))
    gov.ingestor.ingest_objects([ev.command("c", "proposed")])
    gov.ingestor.ingest_objects([ev.command("c", "proposed")])
    assert heard == [1]


def test_idempotency_holds_between_two_stores_objects_on_one_database(gov, ev, store_url):
    """A second process (another Store on the same URL) re-sending events stores nothing new."""
    other = Store(store_url)
    try:
        Ingestor(other, gov.clock).ingest_objects(mixed(ev))
        report = gov.ingestor.ingest_objects(mixed(ev))
    finally:
        other.dispose()
    assert (report.accepted, report.duplicate) == (0, 7)


# --- property: order, duplicates and batching never change the metrics ---------------------------

PATHS = [["proposed"], ["proposed", "rejected"], ["proposed", "approved"],
         ["proposed", "approved", "succeeded"], ["proposed", "approved", "failed"],
         ["proposed", "approved", "succeeded", "rolled_back"], ["succeeded"], ["failed"]]

command_specs = st.lists(
    st.tuples(st.sampled_from(PATHS), st.booleans(), st.sampled_from(["restart", "scale", "drain"])),
    min_size=1, max_size=6)


def _expected(specs) -> dict:
    statuses = [set(path) for path, _, _ in specs]
    n = {s: sum(s in c for c in statuses) for s in
         ("proposed", "approved", "rejected", "succeeded", "failed", "rolled_back")}
    return {"total": len(specs), "proposed": n["proposed"], "approved": n["approved"],
            "rejected": n["rejected"], "succeeded": n["succeeded"], "failed": n["failed"],
            "rolledBack": n["rolled_back"]}


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory):
    """One migrated, initialised SQLite file, copied for each hypothesis example (fast and isolated)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    store = Store(str(path))
    Governance(store, ManualClock(T0)).init_store("alice", phase_started=T0 - timedelta(days=200))
    store.dispose()
    return path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=command_specs, seed=st.randoms(use_true_random=False),
       dup_share=st.floats(0, 1), cuts=st.integers(1, 4))
def test_any_interleaving_yields_the_same_metrics(migrated_sqlite, tmp_path_factory, specs, seed, dup_share, cuts):
    clock = ManualClock(T0)
    ev = Events(T0 - timedelta(hours=2))
    canonical = []
    for i, (path, autonomous, ctype) in enumerate(specs):
        canonical += ev.lifecycle(f"cmd-{i}", path, autonomous=autonomous, type=ctype,
                                  at=ev.base + timedelta(minutes=i))
    canonical.append(ev.incident("inc-0", "critical", "cmd-0"))
    canonical.append(ev.safety("emergency_abort"))

    shuffled = list(canonical)
    seed.shuffle(shuffled)
    shuffled += [e for e in canonical if seed.random() < dup_share]
    seed.shuffle(shuffled)
    points = sorted(seed.randrange(len(shuffled) + 1) for _ in range(cuts - 1))
    chunks = [shuffled[a:b] for a, b in zip([0, *points], [*points, len(shuffled)], strict=False)]

    def metrics_after(chunks_to_ingest):
        path = tmp_path_factory.mktemp("prop") / "governance.db"
        shutil.copy(migrated_sqlite, path)
        store = Store(str(path))
        try:
            ingestor = Ingestor(store, clock, batch_size=seed.choice([1, 3, 1000]))
            reports = [ingestor.ingest_lines(jsonl(chunk).splitlines()) for chunk in chunks_to_ingest]
            doc = Governance(store, clock).metrics.collect_since(timedelta(days=1)).to_json()
        finally:
            store.dispose()
        return doc, sum(r.accepted for r in reports), sum(r.duplicate for r in reports)

    reference, ref_accepted, _ = metrics_after([canonical])
    doc, accepted, duplicate = metrics_after(chunks)
    assert doc == reference
    assert accepted == ref_accepted == len(canonical)
    assert duplicate == len(shuffled) - len(canonical)
    assert doc["commands"] == _expected(specs)
    assert doc["incidents"]["fromAutonomousActions"] == (1 if specs[0][1] else 0)
    assert doc["safety"]["emergencyAborts"] == 1


def test_the_bulk_insert_stores_what_it_was_given_on_both_stores(store):
    """events_repo's inserts (PostgreSQL: one array per column through unnest; SQLite: the driver's executemany)
    store each value as given: NULL and non-NULL services in one batch, a column that is NULL throughout, an
    aware time in another zone as its UTC instant, 0 for False beside real booleans, a key repeated in the
    batch and one stored before skipped."""
    from datetime import timezone
    plus2 = timezone(timedelta(hours=2))
    first = [{"command_id": "a", "command_type": "restart", "status": "succeeded", "autonomous": True,
              "at": T0, "ingested_at": T0, "service": None}]
    rows = [{"command_id": "a", "command_type": "restart", "status": "succeeded", "autonomous": True,  # stored
             "at": T0, "ingested_at": T0, "service": None},
            {"command_id": "b", "command_type": "scale", "status": "failed", "autonomous": False,
             "at": (T0 + timedelta(minutes=1)).astimezone(plus2), "ingested_at": T0, "service": "web"},
            {"command_id": "b", "command_type": "scale", "status": "failed", "autonomous": False,  # repeated
             "at": T0 + timedelta(minutes=1), "ingested_at": T0, "service": "web"},
            {"command_id": "c", "command_type": "scale", "status": "proposed", "autonomous": 0,  # as Boolean takes
             "at": T0 + timedelta(microseconds=7), "ingested_at": T0, "service": None}]
    incidents = [{"incident_id": f"i{n}", "severity": "low", "command_id": None, "at": T0, "ingested_at": T0,
                  "service": None} for n in range(3)]
    with store.write() as conn:
        assert events_repo.insert_command_events(conn, first) == 1
    with store.write() as conn:
        if conn.dialect.name == "postgresql":  # a session zone far from UTC: what is stored must not depend on it
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'Pacific/Chatham'")
        inserted = events_repo.insert_classified(conn, tables.command_events, rows)
        assert events_repo.insert_incidents(conn, incidents + incidents[:1]) == 3
    assert inserted.stored == 2 and sorted(inserted.new or []) == [1, 3] and inserted.duplicate == 2
    c = tables.command_events
    with store.read() as conn:
        stored = conn.execute(sa.select(c.c.command_id, c.c.status, c.c.autonomous, c.c.at, c.c.service)
                              .order_by(c.c.command_id)).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.incidents)).scalar_one() == 3
    assert [tuple(r) for r in stored] == [
        ("a", "succeeded", True, T0, None),
        ("b", "failed", False, T0 + timedelta(minutes=1), "web"),
        ("c", "proposed", False, T0 + timedelta(microseconds=7), None)]
