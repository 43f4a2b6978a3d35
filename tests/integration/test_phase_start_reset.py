"""After any reversion the time at L3 counts from the reversion (runbook: the phase start resets), so a
cycle run right after a revert does not draft L3 -> L3+ "200 days since entering L3" (issue 15). On both
stores."""

from __future__ import annotations

from datetime import timedelta

from engine.clock import isoformat
from storage import state_repo
from tests.conftest import OPERATOR
from tests.integration.test_governance_cycle import make_ready

MONTHS = "6+ months running at L3"


def months_item(report):
    return next(r for results in report.results.values() for r in results if r.item.name == MONTHS)


def expand_to_l3_plus(gov, clock) -> None:
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", phase_started_at=clock.now(),
                                command_whitelist=["restart_service"])
        state_repo.start_phase(conn, phase="L3+", at=clock.now(), actor=OPERATOR, reason="test expansion")


def test_a_manual_revert_restarts_the_time_at_l3_and_the_cycle_drafts_no_proposal(gov, clock):
    make_ready(gov, clock)
    before = gov.readiness.assess()
    assert before.ready and months_item(before).status is True
    assert months_item(before).details.startswith("200 days since entering L3")
    clock.advance(timedelta(days=1))
    expand_to_l3_plus(gov, clock)
    clock.advance(timedelta(days=2))
    reverted_at = clock.now()
    assert gov.overrides.revert(OPERATOR, "bad rollout").changed
    status = gov.status(with_readiness=False)
    assert status["currentPhase"] == "L3" and status["phaseStartDate"] == isoformat(reverted_at)

    clock.advance(timedelta(hours=1))
    after = gov.readiness.assess()
    item = months_item(after)
    assert item.status is False
    assert item.details == f"0 days since entering L3 on {reverted_at:%Y-%m-%d} (needs 182)"
    assert not after.ready and MONTHS in " ".join(after.blockers)
    report = gov.cycle.run(OPERATOR)
    assert report["proposal"] is None, report["proposal"]

    clock.advance(timedelta(days=40))
    assert months_item(gov.readiness.assess()).details.startswith("40 days since entering L3")


def test_the_time_at_l3_is_the_adoption_when_nothing_was_reverted(gov, clock):
    clock.advance(timedelta(days=1))
    item = months_item(gov.readiness.assess())
    assert item.status is True and item.details.startswith("201 days since entering L3")
