"""Validation of incoming events (JSON Lines for `govcon ingest`, the same objects for POST /api/events).

``parse_event`` turns one decoded object into a row for its table, or raises ``EventError`` naming the
field and what is wrong with it. Nothing here touches the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.domain import COMMAND_STATUSES, EVENT_KINDS, SAFETY_TYPES, SEVERITIES

MAX_ID_LENGTH = 200
MAX_COUNT = 2**31 - 1  # the stores' INTEGER columns
#: no event of an autonomous-ops fleet happened before this; an earlier stamp is a broken clock or a typo
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class EventTiming:
    """How far an event's own ``at`` may stray from the store's clock (config ``[ingest]``).

    ``max_clock_skew``: an event stamped further ahead is refused (an agent's clock that runs ahead
    would otherwise hold evidence back until its stamp comes round). ``late_horizon``: an event that
    arrives more than ON_TIME but at most this long after its stamp is late, and the breakers judge it
    on arrival as well as by its stamp; an older one is backfilled history, which never trips a
    breaker (docs/rules.md, "Windows"). This is decided once, as the event is stored.
    """

    max_clock_skew: timedelta = timedelta(minutes=5)
    late_horizon: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_clock_skew < timedelta(0):
            raise ValueError("max_clock_skew must not be negative")
        if self.late_horizon < timedelta(0):
            raise ValueError("late_horizon must not be negative")


DEFAULT_TIMING = EventTiming()
#: an event stored within this of its own ``at`` (either way) is on time: judged by its ``at`` alone (the
#: breakers' own allowance for clocks, engine.breakers.CLOCK_SKEW, is the same 5 s)
ON_TIME = timedelta(seconds=5)


def judged_on_arrival(at: datetime, ingested_at: datetime, timing: EventTiming = DEFAULT_TIMING) -> bool:
    """Whether breakers judge the event by its arrival as well as by its ``at``: it is not on time — late
    (but no later than the horizon: older is backfill) or stamped ahead (within the accepted skew) — so
    that it counts in the windows ending when it arrives."""
    off_by = ingested_at - at
    return ON_TIME < off_by <= timing.late_horizon or -off_by > ON_TIME


class EventError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ParsedEvent:
    kind: str          # command | incident | safety | eval_coverage
    row: dict[str, Any]


def parse_timestamp(value: Any, field: str = "at") -> datetime:
    if not isinstance(value, str) or not value:
        raise EventError(field, "must be an ISO 8601 timestamp string such as 2026-11-20T10:00:00Z")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(field, f"{value!r} is not an ISO 8601 timestamp (e.g. 2026-11-20T10:00:00Z)") from None
    if when.tzinfo is None:
        raise EventError(field, f"{value!r} has no time zone: add Z for UTC (e.g. 2026-11-20T10:00:00Z)")
    try:
        when = when.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise EventError(field, f"{value!r} is out of range (years {EARLIEST_EVENT.year} to now)") from None
    if when < EARLIEST_EVENT:
        raise EventError(field, f"{value!r} is out of range: before {EARLIEST_EVENT.year}, "
                                "not a plausible event time")
    return when


def _span(delta: timedelta) -> str:
    """A short human span: 45 s, 12 min 30 s, 3 h 5 min, 2 d 4 h."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{n} {unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or f"{delta.total_seconds():.3f} s"


def check_not_ahead(when: datetime, now: datetime, max_skew: timedelta, field: str = "at") -> datetime:
    """Refuse a stamp more than ``max_skew`` ahead of the store's clock ``now``."""
    ahead = when - now
    if ahead > max_skew:
        raise EventError(field, f"{when.isoformat().replace('+00:00', 'Z')} is {_span(ahead)} ahead of the "
                                f"store's clock ({now.isoformat().replace('+00:00', 'Z')}); at most "
                                f"{_span(max_skew)} ahead is accepted ([ingest] max_clock_skew)")
    return when


def _text(obj: dict, field: str, *, required: bool = True) -> str | None:
    value = obj.get(field)
    # the common case in a few C calls (ingest's hot loop): an ASCII string cannot hold a lone surrogate, and
    # a non-empty one that is not all whitespace is what ``_checked_text``'s ``strip()`` lets through
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and value.isascii() and "\x00" not in value \
            and not value.isspace():
        return value
    return _checked_text(value, field, required)


def _checked_text(value: Any, field: str, required: bool) -> str | None:
    """``_text`` of any value, naming what is wrong with it."""
    if value is None:
        if required:
            raise EventError(field, "is missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise EventError(field, "must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise EventError(field, f"is longer than {MAX_ID_LENGTH} characters")
    if "\x00" in value:  # PostgreSQL refuses NUL in text; SQLite would store a truncating surprise
        raise EventError(field, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" decoded from JSON
        raise EventError(field, "is not valid Unicode (it contains a lone surrogate escape)") from None
    return value


def _choice(obj: dict, field: str, allowed: tuple[str, ...]) -> str:
    value = obj.get(field)
    if type(value) is str and value in allowed:  # every allowed value is a valid text
        return value
    value = _text(obj, field)
    if value not in allowed:
        raise EventError(field, f"unknown {field} {value!r}; expected one of {', '.join(allowed)}")
    return value


def _count(obj: dict, field: str) -> int:
    if field not in obj:
        raise EventError(field, "is missing")
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EventError(field, "must be a whole number >= 0")
    if value > MAX_COUNT:
        raise EventError(field, f"{value} is too large (at most {MAX_COUNT})")
    return value


def _at(obj: dict, now: datetime, max_skew: timedelta) -> datetime:
    if "at" not in obj:
        raise EventError("at", "is missing")
    return check_not_ahead(parse_timestamp(obj["at"]), now, max_skew)


def parse_event(obj: Any, ingested_at: datetime, timing: EventTiming = DEFAULT_TIMING) -> ParsedEvent:
    """``ingested_at`` is the store's clock now: ``at`` may be at most ``timing.max_clock_skew`` ahead."""
    if not isinstance(obj, dict):
        raise EventError("event", "must be a JSON object")
    kind = obj.get("kind")
    if kind is None:
        raise EventError("kind", "is missing")
    if kind not in EVENT_KINDS:
        raise EventError("kind", f"unknown kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
    skew = timing.max_clock_skew
    if kind == "command":
        autonomous = obj.get("autonomous", False)
        if not isinstance(autonomous, bool):
            raise EventError("autonomous", "must be true or false")
        row: dict[str, Any] = {"command_id": _text(obj, "id"), "command_type": _text(obj, "type"),
               "status": _choice(obj, "status", COMMAND_STATUSES), "autonomous": autonomous,
               "service": _text(obj, "service", required=False), "at": _at(obj, ingested_at, skew),
               "ingested_at": ingested_at}
        row["judged_on_arrival"] = judged_on_arrival(row["at"], ingested_at, timing)
        return ParsedEvent(kind, row)
    if kind == "incident":
        row = {"incident_id": _text(obj, "id"), "severity": _choice(obj, "severity", SEVERITIES),
               "command_id": _text(obj, "command_id", required=False),
               "service": _text(obj, "service", required=False), "at": _at(obj, ingested_at, skew),
               "ingested_at": ingested_at}
        row["judged_on_arrival"] = judged_on_arrival(row["at"], ingested_at, timing)
        return ParsedEvent(kind, row)
    if kind == "safety":
        stype = _choice(obj, "type", SAFETY_TYPES)
        at = _at(obj, ingested_at, skew)
        key = _text(obj, "id", required=False) or f"{stype}@{at.isoformat()}"
        return ParsedEvent(kind, {"event_key": key, "type": stype, "at": at, "ingested_at": ingested_at,
                                  "judged_on_arrival": judged_on_arrival(at, ingested_at, timing)})
    covered, total = _count(obj, "covered"), _count(obj, "total")
    if total == 0:
        raise EventError("total", "must be at least 1")
    if covered > total:
        raise EventError("covered", f"{covered} is more than total {total}")
    at = _at(obj, ingested_at, skew)
    key = _text(obj, "id", required=False) or f"eval_coverage@{at.isoformat()}"
    return ParsedEvent(kind, {"event_key": key, "covered": covered, "total": total, "at": at,
                              "ingested_at": ingested_at})
