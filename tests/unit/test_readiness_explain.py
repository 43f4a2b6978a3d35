"""Why not ready (engine/readiness_explain.py): the "how many more" arithmetic at its edges, checked
against hand-computed values and against a brute-force search for the least count that passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from engine.metrics import CommandCounts
from engine.readiness import CHECKLISTS, ItemResult, ReadinessReport
from engine.readiness_explain import (
    ExplainFacts,
    covered_needed,
    explain,
    more_approvals_for_approval_rate,
    more_successes_for_rollback_rate,
    more_successes_for_success_rate,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("succeeded,failed,need", [
    (163, 1, 37),     # 200/201 = 99.502% passes; 199/200 = 99.5% exactly does not (> 99.5%)
    (199, 1, 1),      # at the boundary: one more success
    (200, 1, 0),      # 200/201 > 99.5% already
    (500, 3, 98),     # 598/601 = 99.5008% > 99.5%; 597/600 = 99.5% is not
    (0, 0, 1),        # unknown (no command): one success makes it 100%
    (0, 2, 399),      # 399/401 = 99.501%; 398/400 = 99.5% is not
])
def test_success_rate_needs(succeeded, failed, need):
    assert more_successes_for_success_rate(succeeded, failed) == need
    s = succeeded + need
    assert Fraction(s, s + failed) > Fraction(995, 1000)
    if need:
        assert not Fraction(s - 1, s - 1 + failed) > Fraction(995, 1000) if s - 1 + failed else True


@pytest.mark.parametrize("approved,proposed,need", [
    (70, 100, 51),    # 121/151 = 80.13%; 120/150 = 80% is not > 80%
    (80, 100, 1),     # exactly 80%: one more
    (81, 100, 0),
    (0, 0, 1),
    (0, 4, 17),       # 17/21 = 80.95%; 16/20 = 80% is not
])
def test_approval_rate_needs(approved, proposed, need):
    assert more_approvals_for_approval_rate(approved, proposed) == need


@pytest.mark.parametrize("rolled_back,succeeded,need", [
    (3, 100, 51),     # 3/151 = 1.987%; 3/150 = 2% is not < 2%
    (1, 50, 1),       # 1/50 = 2% exactly: one more success
    (0, 0, 1),        # unknown: one success makes it 0%
    (2, 0, 101),      # 2/101 < 2%; 2/100 is not
])
def test_rollback_rate_needs(rolled_back, succeeded, need):
    assert more_successes_for_rollback_rate(rolled_back, succeeded) == need


@pytest.mark.parametrize("total,need", [(50, 46), (10, 10), (7, 7), (100, 91), (1000, 901), (1, 1)])
def test_coverage_needs(total, need):
    assert covered_needed(total) == need


def test_the_counts_are_the_least_that_pass_by_brute_force():
    p, a, r = Fraction(995, 1000), Fraction(8, 10), Fraction(2, 100)
    for x in range(0, 60):
        for y in range(0, 6):
            n = more_successes_for_success_rate(x, y)
            assert (x + n) / (x + n + y) > p and (n == 0 or not Fraction(x + n - 1, max(1, x + n - 1 + y)) > p
                                                 or x + n - 1 + y == 0)
            if x <= 50:
                m = more_approvals_for_approval_rate(min(x, 50), 50)
                assert Fraction(min(x, 50) + m, 50 + m) > a and (m == 0 or not Fraction(min(x, 50) + m - 1, 50 + m - 1) > a)
            k = more_successes_for_rollback_rate(y, x)
            assert Fraction(y, x + k) < r and (k == 0 or x + k - 1 == 0 or not Fraction(y, x + k - 1) < r)


def _report(failing: set[str], details: str = "") -> ReadinessReport:
    results = {cat: [ItemResult(i, i.name not in failing, details or i.name) for i in items]
               for cat, items in CHECKLISTS.items()}
    return ReadinessReport(NOW, "L3", 100, results)


def _facts(**kw) -> ExplainFacts:
    base = dict(commands=CommandCounts(total=1200, proposed=100, approved=70, succeeded=163, failed=1,
                                       rolledBack=4),
                at_l3_since=NOW - timedelta(days=100), critical_from_commands=[("inc-9", NOW - timedelta(days=4))],
                eval_coverage=(45, 50, NOW - timedelta(days=1)), last_drill=NOW - timedelta(days=80),
                breaker_mode="enforce", reverting_rules=[("High Error Rate", True, False)], open_events=0)
    return ExplainFacts(**{**base, **kw})


def test_each_missing_item_says_what_earns_it_when_and_the_score_then():
    failing = {"6+ months running at L3", "Command success rate >99.5%", "Command approval rate >80%",
               "Rollback rate <2%", "Eval coverage >90%", "Zero critical incidents from commands",
               "Compliance requirements validated"}
    doc = explain(_report(failing), _facts(), NOW)
    by = {m["name"]: m for m in doc["missing"]}
    assert set(by) == failing
    # 80 points; failing: 5+5+3+2+5+5+3 = 28; earned 52
    assert doc["points"] == 52 and doc["possible"] == 80 and doc["pointsToReady"] == 24  # 76 = ceil(0.95*80)
    assert by["6+ months running at L3"]["when"] == "2027-02-10T12:00:00Z"  # 82 more days: 10 + 31 + 31 + 10
    assert by["6+ months running at L3"]["needs"] == {"days": 82}
    assert by["Command success rate >99.5%"]["needs"]["successfulCommands"] == 37
    assert by["Command success rate >99.5%"]["earn"].startswith("37 more successful commands with no further failure")
    assert by["Command approval rate >80%"]["needs"]["approvedCommands"] == 51
    assert by["Rollback rate <2%"]["needs"]["successfulCommands"] == 38  # 4/201 < 2%; 4/200 is not
    assert by["Eval coverage >90%"]["needs"] == {"covered": 46, "total": 50, "reported": 45}
    assert by["Zero critical incidents from commands"]["when"] == "2026-12-16T12:00:00Z"  # 4 days ago + 30
    assert by["Compliance requirements validated"]["command"] == \
        "govcon attest compliance-requirements-validated --pass --evidence TEXT"
    assert by["Command success rate >99.5%"]["scoreIfPassed"] == round(57 / 80, 4)
    assert not any(m["readyIfPassed"] for m in doc["missing"])
    assert doc["ifAllPassed"] == {"score": 1.0, "ready": True}
    assert [m["name"] for m in doc["missing"]][:2] == ["6+ months running at L3", "Command success rate >99.5%"]
    assert doc["lapsing"] == [{"name": "Kill switch tested", "on": "2026-11-30T12:00:00Z",
                               "command": "govcon kill-switch drill", "scoreIfLapsed": round(50 / 80, 4)}]  # 52 - 2


def test_one_item_away_says_ready_if_passed():
    doc = explain(_report({"Compliance requirements validated"}), _facts(), NOW)  # 77/80 = 96.25%, not required
    assert doc["ready"] is True and doc["headline"] == "ready: 96.2% with no blockers and no open events"
    doc = explain(_report({"Kill switch tested"}), _facts(), NOW)  # 78/80 but a required item fails
    assert doc["ready"] is False and doc["missing"][0]["readyIfPassed"] is True
    assert doc["headline"] == "not ready: 97.5% of 80 points (needs 95%) · 1 required item failing"


def test_checklist_ready_with_open_events_says_they_block_expansion():
    doc = explain(_report(set()), _facts(open_events=2), NOW)
    assert doc["headline"] == "checklist ready — 2 open events block expansion"
    assert explain(_report(set()), _facts(open_events=1), NOW)["headline"] == \
        "checklist ready — 1 open event blocks expansion"
