"""Issue 17 pt 8 for the gate: engine/gate.py answers with engine/domain.py's ``Decision`` and storage/actions_repo.py
keeps the grant and request statuses' strings (storage may not import the engine): JSON and stored values unchanged."""

import json

from engine import gate
from engine.domain import Decision, GrantStatus, RequestStatus
from storage import actions_repo


def test_the_gate_answers_with_the_decision_enum_and_plain_json():
    assert (gate.ALLOW, gate.NEEDS_APPROVAL, gate.DENY) == (Decision.ALLOW, Decision.NEEDS_APPROVAL, Decision.DENY)
    d = gate.GateDecision(gate.NEEDS_APPROVAL, "why", "restart_service", "L3")
    assert json.loads(json.dumps(d.to_json()))["decision"] == "needs_approval"
    assert d.exit_code == 3 and gate.GateDecision(gate.DENY, "", "x", None).exit_code == 4
    assert gate.GateDecision("allow", "", "x", None).exit_code == 0  # a plain string (from a socket) still maps


def test_the_stores_status_strings_are_the_domain_enums_values():
    assert actions_repo.OPEN == GrantStatus.GRANTED.value
    assert actions_repo.EXECUTED == (GrantStatus.SUCCEEDED.value, GrantStatus.FAILED.value,
                                     GrantStatus.ROLLED_BACK.value)
    assert actions_repo.PENDING == RequestStatus.PENDING.value
    assert all(type(v) is str for v in (actions_repo.OPEN, actions_repo.PENDING, *actions_repo.EXECUTED))
