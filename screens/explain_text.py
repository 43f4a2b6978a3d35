"""Why not ready (engine/readiness_explain.py) as text: one renderer for the readiness screen (styled) and
`govcon readiness --explain` (its plain text). Rich only, no Textual."""

from __future__ import annotations

from typing import Any

from rich.text import Text


def _day(iso: str | None) -> str:
    return "–" if not iso else iso[:10]


def headline_text(ex: dict[str, Any]) -> Text:
    style = "bold green" if ex["ready"] and not ex["openEvents"] else "bold yellow" if ex["ready"] else "bold red"
    return Text(ex["headline"], style)


def missing_text(m: dict[str, Any], *, indent: str = "  ") -> Text:
    """One missing item: what earns it, when, the command, the score then."""
    t = Text()
    t.append(f"{indent}to earn it: ", "bold")
    t.append(m["earn"] + "\n")
    if m["command"]:
        t.append(f"{indent}run: ", "bold")
        t.append(m["command"] + "\n", "cyan")
    t.append(f"{indent}if it passed: score {m['scoreIfPassed']:.1%}"
             + (" — ready" if m["readyIfPassed"] else "") + "\n", "green" if m["readyIfPassed"] else "dim")
    return t


def explain_text(ex: dict[str, Any]) -> Text:
    t = Text()
    t.append("Why not ready\n", "bold")
    t.append_text(headline_text(ex))
    t.append(f"\n{ex['points']} of {ex['possible']} points")
    if ex["pointsToReady"]:
        t.append(f"; {ex['pointsToReady']} more needed for 95%")
    t.append(f"; with every missing item: {ex['ifAllPassed']['score']:.1%}\n")
    if not ex["missing"]:
        t.append("every checklist item passes\n", "green")
    for m in ex["missing"]:
        t.append(f"\n✗ {m['name']}", "bold red" if m["required"] else "bold")
        t.append(f"  {m['weight']} pts · {'required' if m['required'] else 'optional'} · {m['category']}\n", "dim")
        t.append(f"  now: {m['now']}\n", "dim")
        t.append_text(missing_text(m))
    if ex["lapsing"]:
        t.append("\nLapsing within 30 days\n", "bold")
        for x in ex["lapsing"]:
            t.append(f"  {x['name']}: lapses {_day(x['on'])} (score then {x['scoreIfLapsed']:.1%}); "
                     f"renew: {x['command']}\n")
    t.rstrip()
    return t
