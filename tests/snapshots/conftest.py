"""Snapshot fixtures: the pilot tests' seeded store, plus the removal of what would make two runs differ
(the text cursor's blink; the clock is the seed's ManualClock, the ids are the seed's)."""

from __future__ import annotations

import pytest
from textual.reactive import reactive
from textual.widgets import Input

from tests.pilot.conftest import (calm_gov, calm_template, console_clock, console_gov, console_url,  # noqa: F401
                                  make_console, seeded_template)


@pytest.fixture(autouse=True)
def _no_cursor_blink(monkeypatch):
    steady = reactive(False, init=False)
    steady.__set_name__(Input, "cursor_blink")
    monkeypatch.setattr(Input, "cursor_blink", steady)
