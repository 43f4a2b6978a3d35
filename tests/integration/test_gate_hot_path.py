"""The gate's hot path (issue 12 / 14 "Speed"), on both stores: the one-statement snapshot reads the same
counts as the single queries it replaces, aging counts of runs without a grant are counted again in the
background, and a heartbeat's token is kept past TokenBook's short cache with its expiry judged on every beat."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engine.clock import isoformat
from engine.gate import Ask
from engine.governance import Governance
from engine.policies import CLOCK_SKEW, COUNT_REFRESH, load_policies
from storage import actions_repo, state_repo, tables
from tests.conftest import OPERATOR
from tests.integration.test_api import api, make_api  # noqa: F401 (the api fixture)

POLICIES = {"service_restart": {"command_types": ["restart_service"], "max_per_day": 50, "max_per_week": 80,
                                "max_concurrent": 3, "min_interval": "1s"}}
DAY, WEEK = timedelta(days=1), timedelta(days=7)


@pytest.fixture
def hgov(store, clock, monkeypatch):
    """The decision log writes only when flushed: its background commits (every BATCH_WAIT) change the store's
    change token, so on a loaded machine one could land between two asks and make the second read the store
    where a test asserts it answered from its kept snapshot."""
    from engine import actions
    monkeypatch.setattr(actions, "BATCH_WAIT", 600.0)
    g = Governance(store, clock, policies=load_policies(POLICIES), evaluate_on_ingest=False)
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    yield g
    g.actions.decision_log.flush()


def _report(gov, cid, at, status="succeeded", autonomous=True):
    assert gov.ingestor.ingest_objects([{"kind": "command", "id": cid, "type": "restart_service", "status": status,
                                         "autonomous": autonomous, "at": isoformat(at)}]).rejected == 0


def test_the_snapshot_reads_what_the_single_queries_read(hgov, clock):
    now = clock.now()
    grants = []
    for i in range(3):  # three grants in flight
        grants.append(hgov.gate.decide("restart_service", agent=f"a{i}").grant_id)
        clock.advance(timedelta(seconds=2))
    _report(hgov, "old", now - timedelta(days=3))
    _report(hgov, "u1", now - timedelta(hours=1))
    _report(hgov, "ahead", clock.now() + timedelta(seconds=10))  # stamped ahead, beyond the window's end
    ask = Ask("restart_service", agent="a0")
    now = clock.now()
    engine = hgov.gate.policy
    with hgov.store.read() as conn:
        used_day = engine._unasked_runs(conn, ("restart_service",), None, DAY, now, 50, {})
        engine._unasked_runs(conn, ("restart_service",), None, WEEK, now, 80, {})
    # arrivals since those counts that take no budget: a grant's outcome, a human's run
    _report(hgov, grants[0], now)
    _report(hgov, "h1", now, autonomous=False)
    clock.advance(timedelta(seconds=8))  # "ahead" enters the window
    now = clock.now()

    def snapshot_agrees() -> object:
        with hgov.store.read() as conn:
            # the gate keeps the day's and week's grant times at this audit head: the snapshot does not count them
            with hgov.store.write(lane="safety") as wconn:  # as a grant's write leaves them
                hgov.gate.policy.grant_written(wconn, ask, now, None, wconn.execute(
                    sa.select(tables.governance_state.c.audit_head_hash)).scalar_one(), {"grant_keys": [
                        (("restart_service",), None, 50, 80)]})
            snap, entries = hgov.gate.snapshot(conn, ask, now, audit_head=True)
            assert snap.p0_day is None and snap.p0_week is None
            kept = entries[("grants", 0)]
            assert kept.hash == snap.audit_head_hash
            assert kept.count(now - DAY, 50) == actions_repo.grants_since(conn, ["restart_service"], now - DAY,
                                                                          cap=50) == 3
            assert kept.count(now - WEEK, 80) == actions_repo.grants_since(conn, ["restart_service"], now - WEEK,
                                                                           cap=80)
            hgov.gate.policy.forget_grant_times()  # not kept: the snapshot counts them
            snap, entries = hgov.gate.snapshot(conn, ask, now, audit_head=True)
            assert snap.p0_day == actions_repo.grants_since(conn, ["restart_service"], now - DAY, cap=50) == 3
            assert snap.p0_week == actions_repo.grants_since(conn, ["restart_service"], now - WEEK, cap=80)
            assert snap.p0_flying == actions_repo.in_flight(conn, ["restart_service"], now, cap=3) == 2
            assert snap.p0_last == actions_repo.newest_grant_at(conn, ["restart_service"])
            assert snap.g_lease is None and snap.g_half_open is None
            assert (snap.a_seq, snap.a_hash) == (snap.audit_head_seq, snap.audit_head_hash)
            for window, span in (("day", DAY), ("week", WEEK)):
                seen, _, _, _, counted_until = entries[(0, window)]
                expected = actions_repo.executions_without_grant_since_count(
                    conn, ["restart_service"], now - span, now + CLOCK_SKEW, after_id=seen,
                    upto_id=snap.g_newest, counted_until=counted_until)
                more = snap._mapping[f"p0_{window}_more"]
                assert more is None or more == expected  # None: the caller counts it itself
        return snap

    assert snapshot_agrees().p0_day_more == 1  # "ahead" entered; the outcome and h1 add nothing
    assert hgov.gate.decide("restart_service", take_grant=False).extra["budget"]["day"]["used"] == 3 + 2
    # a run without a grant arrives, and another status of a command counted before: the snapshot leaves
    # the update to the single queries, which count u2 once and u1 not again
    _report(hgov, "u2", now - timedelta(minutes=5))
    _report(hgov, "u1", now, status="rolled_back")
    assert snapshot_agrees().p0_day_more is None
    with hgov.store.read() as conn:
        full = actions_repo.executions_without_grant(conn, ["restart_service"], now - DAY, now + CLOCK_SKEW)
    assert used_day + 2 == full == 3
    assert hgov.gate.decide("restart_service", take_grant=False).extra["budget"]["day"]["used"] == 3 + 3


def test_an_aging_count_is_counted_again_in_the_background(hgov, clock):
    hgov.gate.decide("restart_service", take_grant=False)
    key = (("restart_service",), None, DAY)
    first = hgov.gate.policy._unasked[key]
    _report(hgov, "late", clock.now() - timedelta(hours=2))
    clock.advance(COUNT_REFRESH + timedelta(seconds=1))
    assert hgov.gate.decide("restart_service", take_grant=False).extra["budget"]["day"]["used"] == 1
    deadline = time.monotonic() + 30
    while hgov.gate.policy._unasked[key][1] == first[1]:  # counted_at moves when the recount lands
        assert time.monotonic() < deadline, "no background recount"
        time.sleep(0.01)
    seen, counted_at, value, _, _ = hgov.gate.policy._unasked[key]
    assert counted_at == clock.now() and value == 1
    assert hgov.gate.decide("restart_service", take_grant=False).extra["budget"]["day"]["used"] == 1


def test_a_cached_heartbeat_token_is_still_judged_for_expiry_on_every_beat(api, clock):
    new = api.tokens.create(OPERATOR, "bot-owner", agent="bot", expires_in=timedelta(minutes=10))
    api.gov.grant_role(OPERATOR, "bot-owner", "agent")
    headers = {"Authorization": "Bearer " + new.secret}
    assert api.post("/api/agents/bot/heartbeat", headers=headers).status_code == 200
    assert api.post("/api/agents/other/heartbeat", headers=headers).status_code == 403  # bound to bot
    clock.advance(timedelta(minutes=10))
    r = api.post("/api/agents/bot/heartbeat", headers=headers)
    assert r.status_code == 401 and r.json()["detail"].startswith(f"the bearer token {new.id} expired at ")
    assert api.post("/api/agents/bot/heartbeat").status_code == 401  # no token at all


def test_hundreds_of_unasked_runs_arriving_at_once_are_judged_in_time(hgov, clock):
    """Once PostgreSQL planned the snapshot's check of "reported before" as a scan per arrival on a fresh
    table (900 arrivals: 0.8 s, past the safety lane's deadline, so the gate denied); now the snapshot
    leaves that case to the single queries."""
    assert hgov.gate.decide("restart_service", take_grant=False).decision == "allow"
    at = isoformat(clock.now() - timedelta(minutes=1))
    assert hgov.ingestor.ingest_objects([{"kind": "command", "id": f"b{i}", "type": "restart_service",
                                          "status": "succeeded", "autonomous": True, "at": at}
                                         for i in range(900)]).rejected == 0
    started = time.monotonic()
    d = hgov.gate.decide("restart_service", take_grant=False)
    assert d.decision == "needs_approval" and "daily limit reached (50/50)" in d.reason, d.reason
    # the answer above proves the safety lane's deadline was met (past it the gate denies); the bound only
    # catches a plan that scans per arrival (0.8 s alone), with room for a loaded machine's second worker
    assert time.monotonic() - started < 5.0


def test_a_heartbeat_token_revoked_here_is_refused_at_its_next_beat(api, clock):
    new = api.tokens.create(OPERATOR, "bot-owner", agent="bot")
    api.gov.grant_role(OPERATOR, "bot-owner", "agent")
    headers = {"Authorization": "Bearer " + new.secret}
    assert api.post("/api/agents/bot/heartbeat", headers=headers).status_code == 200  # now kept 30 s
    api.tokens.revoke(OPERATOR, new.id)
    r = api.post("/api/agents/bot/heartbeat", headers=headers)
    assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]


# --- a decision that takes no grant, from a kept snapshot (issue 16 "Speed": SQLite) -----------------------

_ENGAGE = """
import sys
from storage import state_repo
from storage.store import Store
store = Store(sys.argv[1], apply_migrations=False)
with store.write() as conn:
    state_repo.update_state(conn, kill_switch_engaged=True, kill_switch_by="other", kill_switch_reason="drill")
store.dispose()
"""


def _safety_statements(gov) -> list[str]:
    seen: list[str] = []
    engine = gov.store.engine_for("safety")

    def count(conn, cursor, statement, params, context, many):
        seen.append(statement)
    import sqlalchemy as sa
    sa.event.listen(engine, "before_cursor_execute", count)
    return seen


def test_a_refusal_is_judged_again_from_its_kept_snapshot_while_nothing_was_committed(hgov, clock):
    kept = hgov.gate._change_watch() is not None
    assert kept == (hgov.store.dialect == "sqlite")  # no such cheap check on PostgreSQL: it always reads
    statements = _safety_statements(hgov)
    hgov.gate.decide("restart_service", agent="a0", take_grant=False)  # counts the windows (kept for reuse)
    clock.advance(timedelta(milliseconds=100))  # that snapshot holds no update of the reused counts: read again
    first = hgov.gate.decide("restart_service", agent="a0", take_grant=False)
    assert first.decision == "allow" and statements  # read from the store
    statements.clear()
    clock.advance(timedelta(milliseconds=300))  # time moves; nothing is committed
    again = hgov.gate.decide("restart_service", agent="a0", take_grant=False)
    assert again.decision == "allow" and again.extra["budget"] == first.extra["budget"]
    assert (statements == []) == kept
    clock.advance(timedelta(seconds=1))  # past the kept snapshot's life: read again
    statements.clear()
    hgov.gate.decide("restart_service", agent="a0", take_grant=False)
    assert statements
    # an allow that takes a grant never comes from a kept snapshot: judged and written under the write lock
    statements.clear()
    granted = hgov.gate.decide("restart_service", agent="a0")
    assert granted.grant_id and any("BEGIN IMMEDIATE" in s or "pg_advisory_xact_lock" in s for s in statements)
    with hgov.store.read() as conn:
        assert actions_repo.get_grant(conn, granted.grant_id).status == "granted"


def test_a_kept_snapshot_sees_another_process_engage_the_kill_switch_at_once(hgov, store_url, clock):
    import subprocess
    import sys
    for _ in range(3):
        assert hgov.gate.decide("restart_service", agent="a0", take_grant=False).decision == "allow"  # kept
        clock.advance(timedelta(milliseconds=100))
    subprocess.run([sys.executable, "-c", _ENGAGE, store_url], check=True, timeout=60)
    denied = hgov.gate.decide("restart_service", agent="a0", take_grant=False)  # same instant, same shape
    assert denied.decision == "deny" and "kill switch engaged by other" in denied.reason


def test_a_kept_snapshot_sees_a_mode_a_lease_and_a_policy_change_made_elsewhere(hgov, store_url, clock):
    from storage.store import Store
    other = Governance(Store(store_url, apply_migrations=False), clock, evaluate_on_ingest=False)
    try:
        hgov.grant_role(OPERATOR, OPERATOR, "on-call")
        hgov.grant_role(OPERATOR, OPERATOR, "incident-commander")
        ask = {"command_type": "restart_service", "agent": "bot", "take_grant": False}
        assert hgov.gate.decide(**ask).decision == "allow"
        other.modes.set(OPERATOR, "read_only", "maintenance")
        assert hgov.gate.decide(**ask).decision == "deny"
        other.modes.set(OPERATOR, "normal", "done")
        assert hgov.gate.decide(**ask).decision == "allow"
        hgov.gate.decide(**ask)  # kept again
        with other.store.write() as conn:  # a budget spent elsewhere (as another process's grants would)
            actions_repo.insert_grant(conn, id="gr-elsewhere", command_type="restart_service", service=None,
                                      agent="x", confidence=None, action_class=None, policy=None,
                                      granted_at=clock.now(), expires_at=clock.now() + timedelta(minutes=5),
                                      status="granted", request_id=None, approved_by=None, requested_by="x")
        refused = hgov.gate.decide(**ask)  # min_interval 1s: the grant of another process counts at once
        assert refused.decision == "needs_approval" and "the last grant" in refused.reason
    finally:
        other.close()


def test_a_lease_lapses_on_a_kept_snapshot_as_time_alone_moves(store, clock):
    g = Governance(store, clock, policies=load_policies(POLICIES), evaluate_on_ingest=False,
                   agent_options={"require_lease": True})
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    try:
        with store.write() as conn:
            state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
        g.grant_role(OPERATOR, OPERATOR, "agent")
        g.agents.beat(OPERATOR, OPERATOR, ttl=30)
        g.agents.flush()
        assert g.gate.decide("restart_service", agent=OPERATOR, take_grant=False).decision == "allow"
        clock.advance(timedelta(seconds=29, milliseconds=500))
        assert g.gate.decide("restart_service", agent=OPERATOR, take_grant=False).decision == "allow"
        clock.advance(timedelta(milliseconds=600))  # within the kept snapshot's life, past the lease
        lapsed = g.gate.decide("restart_service", agent=OPERATOR, take_grant=False)
        assert lapsed.decision == "needs_approval" and "lease lapsed" in lapsed.reason
    finally:
        g.actions.decision_log.flush()


def test_a_kept_snapshot_stores_no_count_it_did_not_read(hgov, clock):
    """Judged again at a later instant, a kept snapshot must not move the reused counts of runs without a grant
    up to that instant (runs stamped ahead entering the window then would never be counted)."""
    for i in range(2):
        _report(hgov, f"u{i}", clock.now() - timedelta(hours=1))
    statements = _safety_statements(hgov)
    assert hgov.gate.decide("restart_service", take_grant=False).decision == "allow"  # the reused counts are made
    clock.advance(timedelta(milliseconds=100))
    assert hgov.gate.decide("restart_service", take_grant=False).decision == "allow"  # kept with their updates
    before = dict(hgov.gate.policy._unasked)
    statements.clear()
    clock.advance(timedelta(milliseconds=500))
    assert hgov.gate.decide("restart_service", take_grant=False).extra["budget"]["day"]["used"] == 2
    assert (statements == []) == (hgov.store.dialect == "sqlite")  # from the kept snapshot on SQLite
    if hgov.store.dialect == "sqlite":
        assert hgov.gate.policy._unasked == before


def test_the_safety_lane_lock_sets_generic_plans_for_its_transaction_only(hgov):
    """PostgreSQL: the safety lane's lock statement also sets plan_cache_mode for the transaction (one round trip
    for both); other lanes' writes and the next transaction keep the server's setting."""
    if hgov.store.dialect != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no plan cache mode")
    import sqlalchemy as sa
    show = sa.text("SHOW plan_cache_mode")
    with hgov.store.write(lane="safety") as conn:
        assert conn.execute(show).scalar_one() == "force_generic_plan"
    with hgov.store.read(lane="safety") as conn:
        assert conn.execute(show).scalar_one() == "auto"
    with hgov.store.write() as conn:
        assert conn.execute(show).scalar_one() == "auto"


def test_a_precompiled_statement_past_the_drivers_cache_limits_binds_every_parameter(hgov, clock):
    """The gate's statements run precompiled on the driver's cursor (on PostgreSQL ``$n`` placeholders on a
    RawCursor, which psycopg does not parse again per execution): a statement of more than 50 parameters and
    4 KiB — the snapshot's size — with repeated, typed (UTC datetime) and inlined values binds each one where
    it belongs."""
    now = clock.now()
    values = [sa.bindparam(f"v{i}", type_=sa.Integer) + i for i in range(60)]
    padding = sa.literal_column("'" + "x" * 4200 + "'", sa.String).label("pad")
    stmt_at = sa.bindparam("at", type_=tables.grants.c.granted_at.type)
    build = lambda: sa.select(*(v.label(f"c{i}") for i, v in enumerate(values)),  # noqa: E731
                              (sa.bindparam("v3", type_=sa.Integer) * 2).label("again"),
                              stmt_at.label("at"),
                              sa.literal("granted").label("inlined"), padding)
    with hgov.store.read(lane="safety") as conn:
        pre = actions_repo.precompiled(conn, ("test", "wide"), build)
        assert len(pre.sql) > 4096
        for round_ in range(8):  # past psycopg's prepare threshold (5): prepared and unprepared alike
            params = {f"v{i}": 1000 * round_ + i for i in range(60)} | {"at": now + timedelta(seconds=round_)}
            row = pre.first(conn, params)
            assert [getattr(row, f"c{i}") for i in range(60)] == [1000 * round_ + 2 * i for i in range(60)]
            assert row.again == 2 * (1000 * round_ + 3)
            assert row.at == now + timedelta(seconds=round_)
            assert row.inlined == "granted" and len(row.pad) == 4200


def test_the_in_flight_count_takes_only_open_unexpired_grants_of_the_type(hgov, clock):
    """max_concurrent counts grants in flight (the partial index of open grants, migration 0024): a grant whose
    outcome came, one that expires at this very instant, and one of another type do not count."""
    now = clock.now()
    rows = [("g-open", "restart_service", "granted", now + timedelta(minutes=5)),
            ("g-edge", "restart_service", "granted", now),  # expires now: no longer in flight
            ("g-done", "restart_service", "succeeded", now + timedelta(minutes=5)),
            ("g-other", "scale_pool", "granted", now + timedelta(minutes=5))]
    with hgov.store.write() as conn:
        conn.execute(sa.insert(tables.grants), [
            {"id": gid, "command_type": ctype, "service": None, "agent": "a", "confidence": 0.9, "action_class": None,
             "policy": None, "granted_at": now - timedelta(minutes=1), "expires_at": expires, "status": status,
             "outcome_at": None, "request_id": None, "approved_by": None, "requested_by": None, "report": None}
            for gid, ctype, status, expires in rows])
    with hgov.store.read() as conn:
        assert actions_repo.in_flight(conn, ["restart_service"], now) == 1
        assert actions_repo.in_flight(conn, ["restart_service", "scale_pool"], now) == 2
        assert actions_repo.in_flight(conn, ["restart_service"], now - timedelta(seconds=1)) == 2
        snap = actions_repo.gate_snapshot(conn, command_type="restart_service", now=now, specs=(
            actions_repo.CountSpec(types=("restart_service",), by_service=False, flying_cap=10),))
        assert snap.p0_flying == 1
