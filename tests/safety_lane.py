"""The production safety lane for the tests that hold its latency bar, and for the benchmarks: tests/conftest.py
gives every other test a longer deadline (GOVCON_SAFETY_DEADLINE) so that a loaded machine does not fail them."""

from __future__ import annotations

import pytest

from storage import db

#: the lane govcon runs with when $GOVCON_SAFETY_DEADLINE is not set
PRODUCTION = db.safety_lane(db.SAFETY_DEADLINE_DEFAULT)


def use_production_lane(patch: pytest.MonkeyPatch) -> None:
    """In this process (the stores opened from now on) and in every process started from it."""
    patch.setitem(db.LANES, "safety", PRODUCTION)
    patch.setenv(db.SAFETY_DEADLINE_ENV, str(db.SAFETY_DEADLINE_DEFAULT))
