"""The domain's StrEnums keep the contract's strings (DESIGN.md): stored values, JSON and messages unchanged."""

import json

from engine import domain
from engine.domain import (
    BreakerAction,
    BreakerMode,
    CommandStatus,
    Decision,
    GrantStatus,
    Phase,
    ProposalStatus,
    RequestStatus,
    Severity,
)


def test_values_are_the_contract_strings():
    assert [p.value for p in Phase] == ["L3", "L3+", "L4", "L4+", "L5"]
    assert [s.value for s in CommandStatus] == ["proposed", "approved", "rejected", "succeeded", "failed",
                                                "rolled_back"]
    assert [s.value for s in Severity] == ["critical", "high", "medium", "low"]
    assert [a.value for a in BreakerAction] == ["revert_to_l3", "pause_command_type", "alert_only"]
    assert [m.value for m in BreakerMode] == ["enforce", "shadow"]
    assert [d.value for d in Decision] == ["allow", "needs_approval", "deny"]
    assert [s.value for s in ProposalStatus] == ["pending", "approved", "rejected", "expired"]
    assert [s.value for s in RequestStatus] == ["pending", "approved", "rejected", "expired"]
    assert [s.value for s in GrantStatus] == ["granted", "succeeded", "failed", "rolled_back", "expired", "released"]


def test_the_tuples_are_plain_strings_in_contract_order():
    for name, enum in (("PHASES", Phase), ("COMMAND_STATUSES", CommandStatus), ("SEVERITIES", Severity),
                       ("BREAKER_ACTIONS", BreakerAction), ("BREAKER_MODES", BreakerMode), ("DECISIONS", Decision)):
        values = getattr(domain, name)
        assert values == tuple(m.value for m in enum)
        assert all(type(v) is str for v in values), name  # reprs in messages stay 'L3', not <Phase.L3: 'L3'>


def test_a_member_is_its_string_in_text_json_and_lookups():
    assert Phase.L3_PLUS == "L3+" and f"{Phase.L3_PLUS}" == "L3+" and str(Decision.NEEDS_APPROVAL) == "needs_approval"
    assert json.dumps({"phase": Phase.L4_PLUS, "decision": Decision.DENY}) == '{"phase": "L4+", "decision": "deny"}'
    assert {Phase.L5: 60}["L5"] == 60 and domain.next_phase(Phase.L4) == "L4+"
