"""Views changed by the honest dashboard (issue 15 pt 4) and the mode action (issue 14 pt 3), at 80x24
and 120x40: the dashboard with a rule firing after its event was resolved (its reason on screen, the
readiness pane), and screen 8's mode dialog."""

from __future__ import annotations

import pytest

from storage import breaker_repo
from tests.pilot.seed import OPERATOR
from tests.pilot.test_honest_dashboard import failures
from tests.snapshots.test_snapshots import SIZES, _shoot


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_rule_firing_after_resolution(snap_compare, calm_gov, make_console, console_clock, size):
    calm_gov.grant_role(OPERATOR, OPERATOR, "ops-lead")
    failures(calm_gov.store.url, console_clock, "f")
    with calm_gov.store.read() as conn:
        events = breaker_repo.list_events(conn, unresolved_only=True)
    assert {e.rule_name for e in events} == {"High Error Rate", "Repeated Command Failures"}
    for event in events:  # High Error Rate stays open: the readiness pane says it blocks expansion
        if event.rule_name == "Repeated Command Failures":
            calm_gov.breakers.resolve(OPERATOR, event.id, note="drained by hand")
    assert _shoot(snap_compare, make_console(calm_gov), size, [])


@pytest.mark.parametrize("size", SIZES)
def test_mode_dialog(snap_compare, console_gov, make_console, size):
    assert _shoot(snap_compare, make_console(console_gov), size, ["8", "m"])
