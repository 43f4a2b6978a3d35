"""Validation of incoming events (JSON Lines for `govcon ingest`, the same objects for POST /api/events).

``parse_event`` turns one decoded object into a row for its table, or raises ``EventError`` naming the
field and what is wrong with it. Nothing here touches the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from engine.domain import COMMAND_STATUSES, EVENT_KINDS, SAFETY_TYPES, SEVERITIES

MAX_ID_LENGTH = 200
MAX_COUNT = 2**31 - 1  # the stores' INTEGER columns


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
        raise EventError(field, f"{value!r} is not an ISO 8601 timestamp (e.g. 2026-11-20T10:00:00Z)")
    if when.tzinfo is None:
        raise EventError(field, f"{value!r} has no time zone: add Z for UTC (e.g. 2026-11-20T10:00:00Z)")
    try:
        return when.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise EventError(field, f"{value!r} is out of range (years 1 to 9999 in UTC)") from None


def _text(obj: dict, field: str, *, required: bool = True) -> str | None:
    if field not in obj or obj[field] is None:
        if required:
            raise EventError(field, "is missing")
        return None
    value = obj[field]
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


def _at(obj: dict) -> datetime:
    if "at" not in obj:
        raise EventError("at", "is missing")
    return parse_timestamp(obj["at"])


def parse_event(obj: Any, ingested_at: datetime) -> ParsedEvent:
    if not isinstance(obj, dict):
        raise EventError("event", "must be a JSON object")
    kind = obj.get("kind")
    if kind is None:
        raise EventError("kind", "is missing")
    if kind not in EVENT_KINDS:
        raise EventError("kind", f"unknown kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
    if kind == "command":
        autonomous = obj.get("autonomous", False)
        if not isinstance(autonomous, bool):
            raise EventError("autonomous", "must be true or false")
        return ParsedEvent(kind, {
            "command_id": _text(obj, "id"), "command_type": _text(obj, "type"),
            "status": _choice(obj, "status", COMMAND_STATUSES), "autonomous": autonomous,
            "at": _at(obj), "ingested_at": ingested_at})
    if kind == "incident":
        return ParsedEvent(kind, {
            "incident_id": _text(obj, "id"), "severity": _choice(obj, "severity", SEVERITIES),
            "command_id": _text(obj, "command_id", required=False), "at": _at(obj),
            "ingested_at": ingested_at})
    if kind == "safety":
        stype = _choice(obj, "type", SAFETY_TYPES)
        at = _at(obj)
        key = _text(obj, "id", required=False) or f"{stype}@{at.isoformat()}"
        return ParsedEvent(kind, {"event_key": key, "type": stype, "at": at, "ingested_at": ingested_at})
    covered, total = _count(obj, "covered"), _count(obj, "total")
    if total == 0:
        raise EventError("total", "must be at least 1")
    if covered > total:
        raise EventError("covered", f"{covered} is more than total {total}")
    at = _at(obj)
    key = _text(obj, "id", required=False) or f"eval_coverage@{at.isoformat()}"
    return ParsedEvent(kind, {"event_key": key, "covered": covered, "total": total, "at": at,
                              "ingested_at": ingested_at})
