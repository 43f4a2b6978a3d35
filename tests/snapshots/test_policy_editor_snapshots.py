"""Screen 5's policy editor (`p`, then `e` on seed 002's service_restart) and alert sinks list (`s`, a webhook
and a PagerDuty sink: their URL and routing key masked) at 80x24 and 120x40. Update after an intended change
with `pytest tests/snapshots/test_policy_editor_snapshots.py --snapshot-update`, then look at the SVGs."""

from __future__ import annotations

import pytest

from engine.policies import DEFAULT_POLICIES
from tests.pilot.seed import OPERATOR
from tests.snapshots.test_snapshots import SIZES, _shoot


def _policies(gov) -> None:
    for name, spec in DEFAULT_POLICIES.items():
        gov.policy_book.set(OPERATOR, name, {"command_types": [name], **spec})


def _sinks(gov) -> None:
    gov.sink_book.set(OPERATOR, "ops-webhook", {"type": "webhook", "url": "https://hooks.example.com/T1/s3cr3t",
                                                 "severities": ["critical", "high", "medium"]})
    gov.sink_book.set(OPERATOR, "pager", {"type": "pagerduty", "url": "https://events.pagerduty.com/v2/enqueue",
                                           "routing_key": "R0UT1NGK3Y", "severities": ["critical"]})


@pytest.mark.parametrize("size", SIZES)
def test_policy_editor(snap_compare, console_gov, make_console, size):
    _policies(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, ["5", "p", "down", "e"])


@pytest.mark.parametrize("size", SIZES)
def test_new_policy_editor(snap_compare, console_gov, make_console, size):
    assert _shoot(snap_compare, make_console(console_gov), size, ["5", "p", "n"])


@pytest.mark.parametrize("size", SIZES)
def test_alert_sinks_list(snap_compare, console_gov, make_console, size):
    _sinks(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, ["5", "s"])


@pytest.mark.parametrize("size", SIZES)
def test_alert_sink_editor(snap_compare, console_gov, make_console, size):
    _sinks(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, ["5", "s", "e"])
