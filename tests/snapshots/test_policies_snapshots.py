"""Screen 5's policy view (`p`): the store's gate policies at 80x24 and 120x40 on the seeded store with
seed 002's three policies. Update after an intended change with
`pytest tests/snapshots/test_policies_snapshots.py --snapshot-update`, then look at the SVGs."""

from __future__ import annotations

import pytest

from engine.policies import DEFAULT_POLICIES
from tests.pilot.seed import OPERATOR
from tests.snapshots.test_snapshots import SIZES, _shoot


@pytest.mark.parametrize("size", SIZES)
def test_rules_screen_policies(snap_compare, console_gov, make_console, size):
    for name, spec in DEFAULT_POLICIES.items():
        console_gov.policy_book.set(OPERATOR, name, {"command_types": [name], **spec})
    assert _shoot(snap_compare, make_console(console_gov), size, ["5", "p"])
