"""The gate's cheap allow path (issue 12, "Speed"), on both stores: the count of runs reported without a grant
is brought up to date from the events stored since the last count (not re-scanned), and a type allowed last
is judged once, inside the serialised write — with the same answers as a full judgement."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.clock import isoformat
from engine.governance import Governance
from engine.policies import load_policies
from storage import actions_repo, state_repo
from tests.conftest import OPERATOR

POLICIES = {"service_restart": {"command_types": ["restart_service"], "max_per_day": 2000, "max_per_week": 3000},
            "pool_tuning": {"command_types": ["tune_pool"], "max_per_day": 1},
            "per_svc": {"command_types": ["scale_pool"], "max_per_day": 10, "per_service": True}}


@pytest.fixture
def cgov(store, clock):
    g = Governance(store, clock, policies=load_policies(POLICIES), evaluate_on_ingest=False)
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service", "tune_pool",
                                                                             "scale_pool"])
    yield g
    g.actions.decision_log.flush()  # the background decision-log writer is done before the schema is dropped


def report(gov, cid: str, *, at, status: str = "succeeded", ctype: str = "restart_service", autonomous=True,
           service: str | None = None) -> None:
    event = {"kind": "command", "id": cid, "type": ctype, "status": status, "autonomous": autonomous,
             "at": isoformat(at)}
    if service is not None:
        event["service"] = service
    result = gov.ingestor.ingest_objects([event])
    assert result.rejected == 0, result.to_json()


def used(gov, ctype: str = "restart_service", window: str = "day", **ask) -> int:
    d = gov.gate.decide(ctype, take_grant=False, **ask)
    assert d.decision == "allow", d.reason
    return d.to_json()["budget"][window]["used"]


def test_runs_arriving_after_a_count_are_added_without_a_rescan(cgov, clock):
    now = clock.now()
    report(cgov, "u1", at=now - timedelta(hours=2))
    assert used(cgov) == 1  # the window's full count
    granted = cgov.gate.decide("restart_service")
    assert granted.grant_id is not None
    clock.advance(timedelta(seconds=1))
    report(cgov, granted.grant_id, at=clock.now())  # an outcome names its grant: counted once, as the grant
    assert used(cgov) == 2
    report(cgov, "u2", at=clock.now() - timedelta(hours=5))  # a late unasked run inside the day
    report(cgov, "u1", at=clock.now(), status="rolled_back")  # the same command again: still one run
    report(cgov, "u3", at=clock.now(), autonomous=False)  # a human's run takes no budget
    report(cgov, "u4", at=clock.now() - timedelta(days=2))  # outside the day, inside the week
    report(cgov, "x1", at=clock.now(), ctype="tune_pool")  # another type
    assert used(cgov) == 3
    assert used(cgov, window="week") == 4
    clock.advance(timedelta(seconds=40))  # past the reuse limit: a full count agrees
    assert used(cgov) == 3 and used(cgov, window="week") == 4


def test_a_run_stamped_ahead_counts_once_the_window_reaches_it(cgov, clock):
    assert used(cgov) == 0
    report(cgov, "ahead", at=clock.now() + timedelta(minutes=4))  # within the accepted clock skew
    assert used(cgov) == 0  # not in the window yet (the window ends 5 s ahead of now)
    clock.advance(timedelta(minutes=3, seconds=56))
    assert used(cgov) == 1


def test_many_arrivals_at_once_are_counted_in_full(cgov, clock):
    assert used(cgov) == 0
    at = isoformat(clock.now() - timedelta(minutes=1))
    batch = [{"kind": "command", "id": f"b{i}", "type": "restart_service", "status": "succeeded",
              "autonomous": True, "at": at} for i in range(actions_repo.ARRIVALS_READ + 200)]
    assert cgov.ingestor.ingest_objects(batch).rejected == 0
    assert used(cgov) == actions_repo.ARRIVALS_READ + 200


def test_per_service_counts_stay_apart(cgov, clock):
    assert used(cgov, "scale_pool", service="api") == 0
    assert used(cgov, "scale_pool", service="db") == 0
    report(cgov, "s1", at=clock.now(), ctype="scale_pool", service="api")
    report(cgov, "s2", at=clock.now(), ctype="scale_pool", service="api")
    report(cgov, "s3", at=clock.now(), ctype="scale_pool", service="db")
    assert used(cgov, "scale_pool", service="api") == 2
    assert used(cgov, "scale_pool", service="db") == 1


def test_a_type_allowed_last_is_judged_once_with_the_same_answers(cgov, clock):
    first = cgov.gate.decide("tune_pool", agent="a1")
    assert first.decision == "allow" and first.grant_id is not None
    # allowed last, so the next ask goes straight to the write: there the budget (1 a day) is spent
    second = cgov.gate.decide("tune_pool", agent="a2", request=True, requested_by=OPERATOR)
    assert second.decision == "needs_approval" and "daily limit reached (1/1)" in second.reason
    assert second.request_id is not None  # queued in the same transaction
    third = cgov.gate.decide("tune_pool", agent="a3")  # refused last: judged on a read first, logged later
    assert third.decision == "needs_approval" and third.grant_id is None
    cgov.gate.decide("restart_service")  # allowed
    with cgov.store.write() as conn:
        state_repo.update_state(conn, kill_switch_engaged=True, kill_switch_by=OPERATOR,
                                kill_switch_reason="test")
    denied = cgov.gate.decide("restart_service")
    assert denied.decision == "deny" and denied.grant_id is None and "kill switch" in denied.reason
    cgov.actions.decision_log.flush(timeout=10)
    with cgov.store.read() as conn:
        log = actions_repo.list_decisions(conn, limit=20)
        grants = actions_repo.list_grants(conn, limit=20)
    # every decision logged once (the refusals judged on a read reach the log through its background writer)
    assert sorted((r.command_type, r.agent or "", r.decision) for r in log) == [
        ("restart_service", "", "allow"), ("restart_service", "", "deny"), ("tune_pool", "a1", "allow"),
        ("tune_pool", "a2", "needs_approval"), ("tune_pool", "a3", "needs_approval")]
    assert sorted(g.command_type for g in grants) == ["restart_service", "tune_pool"]
