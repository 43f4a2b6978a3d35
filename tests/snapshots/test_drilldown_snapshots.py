"""Issue 15 points 3 and 5 at 80x24 and 120x40: a breaker event's drill-down (top, and scrolled to its
resolution) and the readiness screen's "why not ready". Update with `pytest --snapshot-update` on these
ids only, then look at the SVGs."""

from __future__ import annotations

import pytest

from tests.pilot.conftest import settle
from tests.pilot.drill_seed import add_drilldown_evidence
from tests.snapshots.conftest import calm_gov, calm_template  # noqa: F401
from tests.snapshots.test_snapshots import SIZES, _shoot


@pytest.mark.parametrize("size", SIZES)
def test_drilldown_of_the_open_event(snap_compare, console_gov, make_console, size):
    add_drilldown_evidence(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, ["2", "enter"])


@pytest.mark.parametrize("size", SIZES)
def test_drilldown_of_the_resolved_event_scrolled_to_its_end(snap_compare, console_gov, make_console, size):
    add_drilldown_evidence(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, ["2", "j", "enter", "end"])


__all__ = ["settle"]


@pytest.mark.parametrize("size", SIZES)
def test_readiness_explained(snap_compare, console_gov, make_console, size):
    """Screen 3 on the seeded store: the headline, the "if ✓" column, and the first failing required item's
    detail saying what earns it and the score then."""
    assert _shoot(snap_compare, make_console(console_gov), size, ["3"])


@pytest.mark.parametrize("size", SIZES)
def test_readiness_checklist_ready_but_open_events_block(snap_compare, calm_gov, make_console, size):
    from tests.pilot.seed import _seed_events
    with calm_gov.store.write() as conn:
        _seed_events(conn)  # one open event (and two resolved)
    assert _shoot(snap_compare, make_console(calm_gov), size, ["3"])
