"""One ingest pipeline (issue 17 pt 2): the same events sent over HTTP (POST /api/events, the group
commit of console/api_ingest.py) and given to the engine (``Ingestor.ingest_objects``, as `govcon ingest`
stores a batch) leave the same rows, the same counts of accepted, duplicate, rejected and conflicting
events with the same errors, and the same breaker trips and state. Two twin stores start identical;
any divergence of the HTTP path from the engine's (its own inserts, its own validation, detection
skipped or run differently) shows as a difference here."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engine.governance import Governance
from storage import state_repo, tables
from storage.store import Store
from tests.conftest import OPERATOR, PG_URL, T0, _drop_schema, _postgres_schema_url
from tests.integration.test_api import make_api, wait_for

EVENT_TABLES = (tables.command_events, tables.incidents, tables.safety_events, tables.eval_coverage)


@pytest.fixture
def twin_url(store_url, tmp_path):
    """A second, empty store of the same kind as ``store``."""
    if not store_url.startswith("postgresql"):
        yield str(tmp_path / "twin.db")
        return
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(schema)
    finally:
        _drop_schema(admin, schema)
        admin.dispose()


def governed(store, clock) -> Governance:
    """An initialised store at L4 with restart_service whitelisted: a trip of High Error Rate reverts it."""
    gov = Governance(store, clock)
    gov.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    return gov


def batches(ev) -> list[list[dict]]:
    """Requests as agents send them: a mixed batch with a bad item and an in-batch duplicate, its resend
    with a conflicting field, then failures enough to trip High Error Rate."""
    first = [ev.command("c1", "proposed"), ev.command("c1", "succeeded"), ev.command("c2", "failed"),
             ev.command("c2", "failed"),  # the same key twice in one batch: stored once
             ev.command("c3", "exploded"),  # rejected: not a status
             ev.incident("i1", "high", command_id="c2"), ev.safety("emergency_abort", id="s1"),
             ev.coverage(45, 50), {"kind": "command", "id": "c4"}]  # rejected: fields missing
    resend = [ev.command("c1", "succeeded"), ev.incident("i1", "low", command_id="c2"),  # conflict: severity
              ev.safety("emergency_abort", id="s1"), ev.command("c5", "rolled_back")]
    failing = [ev.command(f"f{i}", "failed" if i < 4 else "succeeded", at=T0 - timedelta(seconds=30))
               for i in range(20)]
    return [first, resend, failing]


def stored(store) -> dict[str, list[tuple]]:
    with store.read() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(sa.select(*[c for c in t.c if c.name != "id"])))
                for t in EVENT_TABLES}


def trips(gov) -> list[tuple]:
    return sorted((e["ruleName"], e["severity"], e["action"], e["commandType"]) for e in gov.breaker_events())


def test_http_ingest_and_engine_ingest_store_and_detect_the_same(store, twin_url, clock, ev):
    twin = Store(twin_url)
    try:
        by_http, by_engine = governed(store, clock), governed(twin, clock)
        api = make_api(by_http)
        with api.client:
            headers = api.auth(OPERATOR)
            for batch in batches(ev):
                answer = api.post("/api/events", json=batch, headers=headers)
                report = by_engine.ingestor.ingest_objects(batch)
                doc = answer.json()
                doc.pop("detail", None)
                assert doc == report.to_json(), batch
                assert answer.status_code == (422 if report.rejected else 409 if report.conflict else 200)
            # detection: the API judges after the commit on its evaluator thread, the engine in the listener
            wait_for(lambda: trips(by_http) == trips(by_engine) != [])
        assert stored(store) == stored(twin)
        assert [("High Error Rate", "critical", "revert_to_l3")] == [t[:3] for t in trips(by_engine)
                                                                      if t[0] == "High Error Rate"]
        http_state, engine_state = by_http.status(), by_engine.status()
        for key in ("currentPhase", "commandWhitelist", "pausedCommandTypes", "unresolvedEvents"):
            assert http_state[key] == engine_state[key], key
        assert engine_state["currentPhase"] == "L3"
    finally:
        twin.dispose()


def test_single_event_requests_grouped_in_one_commit_count_as_the_engine_counts(store, twin_url, clock, ev):
    """Requests of one event each, sent together so that the writer groups them: per request, the same
    accepted/duplicate counts as the engine gives one event at a time; the same rows in the end."""
    from concurrent.futures import ThreadPoolExecutor
    twin = Store(twin_url)
    try:
        by_http, by_engine = governed(store, clock), governed(twin, clock)
        events = [ev.command(f"k{i % 7}", ("proposed", "succeeded")[i % 2]) for i in range(40)]
        api = make_api(by_http)
        with api.client:
            headers = api.auth(OPERATOR)
            with ThreadPoolExecutor(8) as pool:
                docs = list(pool.map(lambda e: api.post("/api/events", json=e, headers=headers).json(), events))
        reports = [by_engine.ingestor.ingest_objects([e]) for e in events]
        assert sum(d["accepted"] for d in docs) == sum(r.accepted for r in reports) == 14
        assert sum(d["duplicate"] for d in docs) == sum(r.duplicate for r in reports) == 26
        assert all(d["accepted"] + d["duplicate"] == 1 and d["errors"] == [] for d in docs)
        assert stored(store) == stored(twin)
    finally:
        twin.dispose()


def test_groups_stored_together_report_as_groups_stored_one_by_one(store, twin_url, clock, ev):
    """Ingestor.store_groups with groups of distinct command ids takes one insert per kind for all of them;
    each group's report and the stored rows are those of storing the groups one after another: stored
    before, duplicates within and across groups, incident conflicts across groups, bad events."""
    twin = Store(twin_url)
    try:
        together, one_by_one = governed(store, clock), governed(twin, clock)
        history = [ev.command("old", "proposed"), ev.incident("i-old", "low")]
        for gov in (together, one_by_one):
            gov.ingestor.ingest_objects(history)
        groups = [
            [(1, ev.command("a", "proposed")), (2, ev.command("a", "proposed")), (3, ev.incident("i1", "high"))],
            [(1, ev.command("b", "failed")), (2, ev.incident("i1", "low")), (3, ev.incident("i-old", "low"))],
            [(1, ev.incident("i-old", "critical")), (2, ev.command("c", "exploded")), (3, ev.command("c", "failed"))],
            [(1, ev.command("old", "succeeded", type="scale_pool"))],  # the same id as stored: its type differs
        ]
        combined = together.ingestor.store_groups(groups)
        alone = [one_by_one.ingestor.store_groups([group])[0] for group in groups]
        assert [r.to_json() for r in combined] == [r.to_json() for r in alone]
        assert [r.kinds for r in combined] == [r.kinds for r in alone]
        assert [(r.accepted, r.duplicate, r.rejected, r.conflict) for r in combined] == [
            (2, 1, 0, 0), (1, 1, 0, 1), (1, 0, 1, 1), (1, 0, 0, 0)]
        assert stored(store) == stored(twin)
    finally:
        twin.dispose()


def test_single_event_requests_with_distinct_ids_over_http_match_the_engine(store, twin_url, clock, ev):
    """Requests the writer groups (distinct command ids: one insert for the group) answer each for itself."""
    from concurrent.futures import ThreadPoolExecutor
    twin = Store(twin_url)
    try:
        by_http, by_engine = governed(store, clock), governed(twin, clock)
        events = [ev.command(f"d{i}", "proposed") for i in range(30)] + [ev.incident(f"j{i % 5}", "high")
                                                                         for i in range(10)]
        api = make_api(by_http)
        with api.client:
            headers = api.auth(OPERATOR)
            with ThreadPoolExecutor(8) as pool:
                docs = list(pool.map(lambda e: api.post("/api/events", json=e, headers=headers).json(), events))
        reports = [by_engine.ingestor.ingest_objects([e]) for e in events]
        assert sorted(map(str, docs)) == sorted(str(r.to_json()) for r in reports)
        assert sum(d["accepted"] for d in docs) == 35 and sum(d["duplicate"] for d in docs) == 5
        assert stored(store) == stored(twin)
        assert api.client.app.state.gov is by_http
    finally:
        twin.dispose()
