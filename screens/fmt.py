"""Small formatting helpers shared by the screens.

Imported by `govcon gate`'s lean path (console/gate_cli.py): Rich is imported only inside ``safe``."""

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


def plural(n: int, noun: str, many: str | None = None) -> str:
    """"1 trip", "2 trips", "1,204 windows": the count and the noun that agrees with it."""
    return f"{n:,} {noun if n == 1 else many or noun + 's'}"


def clean(value: Any, *, keep: str = "\n\t") -> str:
    """Text from agents and operators with each control character shown escaped (``\\x1b``, ``\\u202e``)
    but those in ``keep``. Textual strips only BEL, BS, VT, FF and CR: ESC, CSI, other C0/C1 codes and
    bidi overrides would reach the terminal. The one home of this rule: console/render.py ``clean`` (the
    CLI) calls it too."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(c if c.isprintable() or c == " " or c in keep else repr(c)[1:-1] for c in text)


def safe(content: Any) -> Any:
    """``content`` for a Static or a table cell with control characters escaped: a str stays a str (markup
    is still markup), a Rich Text keeps its styles piece by piece; anything else is returned as it is."""
    from rich.text import Text

    if isinstance(content, str):
        return clean(content)
    if not isinstance(content, Text) or clean(content.plain) == content.plain:
        return content
    cuts = sorted({i for s in content.spans for i in (s.start, s.end)} - {0, len(content.plain)})
    out = Text(style=content.style, justify=content.justify, overflow=content.overflow, no_wrap=content.no_wrap,
               end=content.end)
    for piece in content.divide(cuts):  # every span now covers its whole piece
        part = Text(clean(piece.plain))
        for span in piece.spans:
            part.stylize(span.style)
        out.append_text(part)
    return out
