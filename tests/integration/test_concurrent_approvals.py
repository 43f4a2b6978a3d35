"""Two processes approving the same proposal at the same instant, on SQLite and on PostgreSQL:
no approval is lost and the transition is applied exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from engine.clock import isoformat
from storage import state_repo
from tests.conftest import OPERATOR
from tests.integration.test_governance_cycle import make_ready

APPROVER = textwrap.dedent("""
    import json, sys, time
    from datetime import datetime
    from engine.clock import ManualClock
    from engine.errors import GovconError
    from engine.governance import Governance
    from storage.store import Store
    url, pid, actor, role, now, start_at = sys.argv[1:]
    gov = Governance(Store(url), ManualClock(datetime.fromisoformat(now)))
    gov.proposals.list()                      # connect and warm up before the starting line
    time.sleep(max(0.0, float(start_at) - time.time()))
    try:
        doc = gov.proposals.approve(actor, pid, role)
        print(json.dumps({"ok": True, "status": doc["status"]}))
    except GovconError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
""")


def race(url: str, pid: str, clock, approvals: list[tuple[str, str]]) -> list[dict]:
    start_at = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", APPROVER, url, pid, actor, role, isoformat(clock.now()),
                               str(start_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for actor, role in approvals]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _proposal(gov, clock, phase: str) -> str:
    make_ready(gov, clock)
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase=phase, command_whitelist=[])
    return gov.cycle.run(OPERATOR)["proposal"]["proposalId"]


def test_two_roles_at_once_both_count_and_apply_once(gov, clock, store_url):
    pid = _proposal(gov, clock, "L3+")  # L3+ -> L4 needs tech-lead and ops-lead
    results = race(store_url, pid, clock, [("bob", "tech-lead"), ("carol", "ops-lead")])
    assert all(r["ok"] for r in results), results
    p = gov.proposals.show(pid)
    assert sorted(a["role"] for a in p["approvals"]) == ["ops-lead", "tech-lead"]
    assert p["status"] == "approved"
    assert gov.status(with_readiness=False)["currentPhase"] == "L4"
    actions = [e["action"] for e in gov.audit_entries(limit=500)]
    assert actions.count("proposal.apply") == 1 and actions.count("proposal.approve") == 2
    assert gov.audit_verify()[1] is None


def test_the_same_role_at_once_counts_once(gov, clock, store_url):
    pid = _proposal(gov, clock, "L3")  # L3 -> L3+ needs tech-lead only
    gov.grant_role(OPERATOR, "erin", "tech-lead")
    results = race(store_url, pid, clock, [("bob", "tech-lead"), ("erin", "tech-lead")])
    assert sorted(r["ok"] for r in results) == [False, True], results
    refused = next(r for r in results if not r["ok"])
    assert "approved already" in refused["error"] or "not pending" in refused["error"]
    p = gov.proposals.show(pid)
    assert len(p["approvals"]) == 1 and p["status"] == "approved"
    with gov.store.read() as conn:
        history = state_repo.phase_history(conn)
    assert [h.phase for h in history].count("L3+") == 1
    assert gov.audit_verify()[1] is None
