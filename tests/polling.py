"""Waiting in tests without fixed sleeps: poll a condition against a deadline (the console's pilot tests
have ``until`` in tests/pilot/conftest.py, which also lets the app settle between tries)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05,
               what: str = "the condition") -> T:
    """Call ``condition`` until it returns something truthy and return that; fail after ``timeout``
    seconds naming ``what``. The deadline only bounds a failure: a passing test waits as long as the
    thing takes, so make it generous (a loaded 2-core CI machine is several times slower than a quiet one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
