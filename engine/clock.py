"""Injected time: every window, expiry and weekly cycle reads a Clock, so tests can move it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, overload


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, snapshot tests, backtests)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)


def aware_utc(at: datetime) -> datetime:
    """``at`` with its time zone; a naive time is UTC (as SQLite gives stored times back)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@overload
def isoformat(when: datetime) -> str: ...
@overload
def isoformat(when: None) -> None: ...
@overload
def isoformat(when: datetime | None) -> str | None: ...


def isoformat(when: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as every JSON document of govcon spells time."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
