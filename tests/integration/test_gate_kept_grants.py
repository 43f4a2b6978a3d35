"""The day's and week's grant counts kept in memory (issue 12 "Speed", engine/policies.py ``_GrantTimes``), on
both stores: an allow does not count the window's grants again while the store's audit head is the one they
were kept at, and every answer's budget is the store's own count — as time ages grants out of the windows, and
at once when another store object or another *process* writes a grant, or a grant row is written without its
audit entry."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from engine.governance import Governance
from engine.policies import load_policies
from storage import actions_repo, state_repo
from storage.store import Store
from tests.conftest import OPERATOR

POLICIES = {"service_restart": {"command_types": ["restart_service"], "max_per_day": 6, "max_per_week": 9,
                                "max_concurrent": 50},
            "per_svc": {"command_types": ["scale_pool"], "max_per_day": 2, "per_service": True}}
DAY, WEEK = timedelta(days=1), timedelta(days=7)
TYPES = ["restart_service"]


@pytest.fixture
def kgov(store, clock):
    g = Governance(store, clock, policies=load_policies(POLICIES), evaluate_on_ingest=False)
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service", "scale_pool"])
    yield g
    g.actions.decision_log.flush()


def _store_counts(gov, now, types=TYPES, service=None) -> tuple[int, int]:
    with gov.store.read() as conn:
        return (actions_repo.grants_since(conn, types, now - DAY, service=service, cap=6),
                actions_repo.grants_since(conn, types, now - WEEK, service=service, cap=9))


def _budget(decision) -> tuple[int, int]:
    budget = decision.to_json()["budget"]
    return budget["day"]["used"], budget["week"]["used"]


def _kept_hits(gov, monkeypatch) -> list[int | None]:
    from engine import policies
    hits: list[int | None] = []
    plain = policies._SnapCounts.kept_grants

    def counting(self, *args):
        found = plain(self, *args)
        hits.append(found)
        return found
    monkeypatch.setattr(policies._SnapCounts, "kept_grants", counting)
    return hits


def test_kept_counts_are_the_stores_as_grants_age_out_and_the_limits_bind(kgov, clock, monkeypatch):
    hits = _kept_hits(kgov, monkeypatch)
    answers = []
    for step in range(40):  # a grant every 5 hours: the day's window holds 4-5, the week's spends its 9
        clock.advance(timedelta(hours=5))
        now = clock.now()
        expected = _store_counts(kgov, now)
        decision = kgov.gate.decide("restart_service", agent=f"a{step}")
        answers.append(decision.decision)
        assert _budget(decision) == expected, (step, decision.reason)
        if decision.decision == "allow":
            assert _store_counts(kgov, now) == (expected[0] + 1, expected[1] + 1)
            kgov.ingestor.ingest_objects([{"kind": "command", "id": decision.grant_id, "type": "restart_service",
                                           "status": "succeeded", "autonomous": True, "at": now.isoformat()}])
        else:
            assert "limit reached" in decision.reason
            assert decision.grant_id is None
        dry = kgov.gate.decide("restart_service", agent=f"a{step}", take_grant=False)  # a read, after the write
        assert _budget(dry) == _store_counts(kgov, now)
    assert "needs_approval" in answers and answers.count("allow") >= 9
    assert sum(h is not None for h in hits) > len(hits) // 2  # most asks judged from the kept times


def test_a_grant_written_by_another_store_object_counts_at_once(kgov, store_url, clock):
    other = Governance(Store(store_url, apply_migrations=False), clock, policies=load_policies(POLICIES),
                       evaluate_on_ingest=False)
    try:
        for i in range(3):
            assert kgov.gate.decide("restart_service", agent=f"k{i}").decision == "allow"
            clock.advance(timedelta(seconds=1))
            assert other.gate.decide("restart_service", agent=f"o{i}").decision == "allow"
            clock.advance(timedelta(seconds=1))
            assert _budget(kgov.gate.decide("restart_service", take_grant=False)) == _store_counts(kgov, clock.now())
        # 6 of 6 spent, across the two: neither allows another
        assert kgov.gate.decide("restart_service").decision == "needs_approval"
        assert other.gate.decide("restart_service").decision == "needs_approval"
    finally:
        other.actions.decision_log.flush()
        other.close()


_GRANT_ELSEWHERE = """
import sys
from datetime import datetime
from engine.clock import ManualClock
from engine.governance import Governance
from engine.policies import load_policies
from storage.store import Store
clock = ManualClock(datetime.fromisoformat(sys.argv[2]))
gov = Governance(Store(sys.argv[1], apply_migrations=False), clock, evaluate_on_ingest=False,
                 policies=load_policies({"service_restart": {"command_types": ["restart_service"]}}))
decision = gov.gate.decide("restart_service", agent="elsewhere")
assert decision.grant_id, decision.reason
gov.actions.decision_log.flush()
gov.close()
"""


def test_a_grant_written_by_another_process_counts_at_once(kgov, store_url, clock):
    for i in range(5):
        assert kgov.gate.decide("restart_service", agent=f"k{i}").decision == "allow"
        clock.advance(timedelta(seconds=1))
    assert _budget(kgov.gate.decide("restart_service", take_grant=False)) == (5, 5)  # kept
    subprocess.run([sys.executable, "-c", _GRANT_ELSEWHERE, store_url, clock.now().isoformat()], check=True,
                   timeout=120)
    clock.advance(timedelta(seconds=1))
    refused = kgov.gate.decide("restart_service", agent="k5")
    assert refused.decision == "needs_approval" and "daily limit reached" in refused.reason, refused.reason
    assert _budget(refused) == (6, 6)


def test_a_grant_row_written_without_its_audit_entry_drops_the_kept_times(kgov, clock):
    for i in range(5):
        assert kgov.gate.decide("restart_service", agent=f"k{i}").decision == "allow"
        clock.advance(timedelta(seconds=1))
    with kgov.store.write() as conn:  # no audit entry: the head does not move
        actions_repo.insert_grant(conn, id="gr-raw", command_type="restart_service", service=None, agent="x",
                                  confidence=None, action_class=None, policy=None, granted_at=clock.now(),
                                  expires_at=clock.now() + timedelta(minutes=5), status="granted",
                                  request_id=None, approved_by=None, requested_by="x")
    clock.advance(timedelta(seconds=1))
    refused = kgov.gate.decide("restart_service", agent="k5")
    assert refused.decision == "needs_approval" and _budget(refused) == (6, 6), refused.reason


def test_per_service_kept_counts_stay_apart(kgov, clock):
    for service in ("a", "b", "a", "b"):
        assert kgov.gate.decide("scale_pool", service=service).decision == "allow"
        clock.advance(timedelta(seconds=1))
    for service in ("a", "b"):
        refused = kgov.gate.decide("scale_pool", service=service)
        assert refused.decision == "needs_approval" and "limit reached for " + service in refused.reason
    assert kgov.gate.decide("scale_pool", service="c").decision == "allow"


def test_a_failed_write_forgets_the_kept_times(kgov, clock, monkeypatch):
    assert kgov.gate.decide("restart_service").decision == "allow"
    assert kgov.gate.policy._grant_times  # kept after the write

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(actions_repo, "write_grant", broken)
    clock.advance(timedelta(seconds=1))
    denied = kgov.gate.decide("restart_service")
    assert denied.decision == "deny" and "cannot record the grant" in denied.reason
    assert kgov.gate.policy._grant_times == {}
    monkeypatch.undo()
    clock.advance(timedelta(seconds=1))
    again = kgov.gate.decide("restart_service")
    assert again.decision == "allow" and _budget(again) == (1, 1)


def test_caps_above_the_bound_are_counted_in_the_store(store, clock, monkeypatch):
    from engine import policies
    monkeypatch.setattr(policies, "KEPT_GRANTS_MAX", 8)  # the week's cap of 9 is above it
    g = Governance(store, clock, policies=load_policies(POLICIES), evaluate_on_ingest=False)
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    try:
        for i in range(6):
            assert g.gate.decide("restart_service", agent=f"k{i}").decision == "allow"
            clock.advance(timedelta(seconds=1))
        refused = g.gate.decide("restart_service")
        assert refused.decision == "needs_approval" and _budget(refused) == (6, 6)
        assert not any(key[0] == ("restart_service",) for key in g.gate.policy._grant_times)
    finally:
        g.actions.decision_log.flush()
