"""Small formatting helpers shared by the screens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

STATE_STYLE = {"TRIPPED": "bold white on red", "FIRING": "bold red", "ok": "green", "too few": "dim",
               "disabled": "dim", "invalid": "yellow"}
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}


def parse_time(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def short_time(value: str | datetime | None) -> str:
    when = parse_time(value)
    return "–" if when is None else when.astimezone(UTC).strftime("%m-%d %H:%M")


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f}%"


def bar(fraction: float, width: int = 10) -> str:
    full = max(0, min(width, round(fraction * width)))
    return "█" * full + "░" * (width - full)


def observed_lines(observed: dict[str, Any] | None) -> list[str]:
    """A breaker event's observed values, one per line (rates as percentages)."""
    lines = []
    for key, value in (observed or {}).items():
        if isinstance(value, float) and ("Rate" in key or "rate" in key):
            value = f"{value * 100:.2f}%"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        lines.append(f"{key}: {value}")
    return lines


def matches(text: str, *fields: Any) -> bool:
    """Case-insensitive: every word of ``text`` appears in one of the fields."""
    hay = " ".join("" if f is None else str(f) for f in fields).lower()
    return all(word in hay for word in text.lower().split())
