"""Snapshot fixtures: the pilot tests' seeded store, plus the removal of what would make two runs differ
(the text cursor's blink; the clock is the seed's ManualClock, the ids are the seed's)."""

from __future__ import annotations

import pytest
from textual.reactive import reactive
from textual.widgets import Input

from tests.pilot.conftest import calm_gov, calm_template, console_clock, console_gov, console_url, seeded_template  # noqa: F401
from tests.pilot.seed import OPERATOR


@pytest.fixture(autouse=True)
def _no_cursor_blink(monkeypatch):
    steady = reactive(False, init=False)
    steady.__set_name__(Input, "cursor_blink")
    monkeypatch.setattr(Input, "cursor_blink", steady)


@pytest.fixture
def make_console():
    """As the pilot tests' factory, without the once-a-second refresh: it would reload the same data,
    but a reload landing while the picture is taken on a loaded machine can catch a pane mid-repaint.
    Snapshots show the first complete load."""
    from console.app import make_app

    def make(gov, operator: str = OPERATOR):
        return make_app(gov, operator=operator, scheduler=False, refresh_seconds=3600.0)
    return make
