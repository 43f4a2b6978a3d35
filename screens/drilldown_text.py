"""A breaker event's drill-down (engine/drilldown.py) as text: one renderer for the console's drill-down
view (styled) and `govcon events show` (its plain text), so the two never say different things. Rich
only, no Textual: the CLI imports it without the console."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from engine.drilldown import fmt_value, sparkline
from screens.fmt import SEVERITY_STYLE, observed_lines, parse_time, plural


def _t(value: str | None) -> str:
    when = parse_time(value)
    return "–" if when is None else when.strftime("%Y-%m-%d %H:%M:%S")


def _hm(value: str | None) -> str:
    when = parse_time(value)
    return "–" if when is None else when.strftime("%m-%d %H:%M:%S")


def _status(doc: dict[str, Any]) -> tuple[str, str]:
    if not doc["resolved"]:
        return "OPEN", "bold red"
    return ("resolved · false positive", "green") if doc["falsePositive"] else ("resolved", "green")


def drilldown_text(doc: dict[str, Any]) -> Text:
    t = Text()
    status, style = _status(doc)
    t.append(doc["ruleName"], "bold")
    t.append(f"  {status}", style)
    if doc["shadow"]:
        t.append("  SHADOW", "yellow")
    t.append("\n")
    t.append(f"id {doc['id']} · tripped {_t(doc['timestamp'])} · ", "dim")
    t.append(doc["severity"], SEVERITY_STYLE.get(doc["severity"], ""))
    t.append(f" · {doc['action']}" + (f" · {doc['commandType']}" if doc["commandType"] else "") + "\n", "dim")
    rule = doc.get("rule")
    if rule is None:
        t.append("rule: deleted since the trip (its condition is unknown)\n", "yellow")
    else:
        t.append(f"condition {rule['condition']} over {doc['window']['length']} "
                 f"(min {rule['minSamples']} samples for a rate)\n")
        if rule["changedSinceTrip"]:
            t.append(f"  the rule's window is {rule['window']} now; this trip judged {doc['window']['length']}\n",
                     "yellow")
    w = doc["window"]
    t.append(f"window {_hm(w['start'])} → {_hm(w['end'])}", "dim")
    if w["afterResolutionAt"]:
        t.append(" (from the previous event's resolution)", "dim")
    t.append(" · evidence stored by the trip\n", "dim")

    t.append("\nWhy it tripped\n", "bold")
    series = doc.get("series")
    if series:
        bars, scale, breached = sparkline(series)
        last = series["points"][-1]["value"]
        t.append(f"  {series['label']}\n")
        if last is None and not any(p["value"] is not None for p in series["points"]):
            t.append(f"  no value anywhere in the window: fewer than {series.get('minSamples')} commands stored "
                     "by the trip\n", "dim")
        t.append("  ")
        for cell, over in zip(bars, breached, strict=True):
            t.append(cell, "bold red" if over else "cyan")
        t.append(f"  {fmt_value(last, series['kind'])}\n")
        if any(breached):
            t.append("  " + "".join("^" if over else " " for over in breached).rstrip() + "\n", "red")
        t.append(f"  {scale}; ^ over it", "dim")
        if series.get("minSamples"):
            t.append(f"; blank: under {series['minSamples']} commands", "dim")
        t.append("\n", "dim")
    observed = {k: v for k, v in (doc.get("observed") or {}).items() if k not in ("effect", "window")}
    t.append("  observed: " + " · ".join(observed_lines(observed)) + "\n")

    are = doc["commandsAre"]
    shown, matching = len(doc["commands"]), doc["commandsMatching"]
    if are["namedByIncidents"]:
        what = "named by the incidents"
    else:
        kinds = "/".join(s.replace("_", " ") for s in are["statuses"]) if are["statuses"] else "all"
        what = f"{kinds}" + (f" {are['commandType']}" if are["commandType"] else "") + \
            (" autonomous" if are["autonomousOnly"] else "") + " in the window"
    t.append(f"\nCommands ({what}: {plural(matching, 'event')}"
             + (f", newest {shown} shown" if shown < matching else "") + ")\n", "bold")
    if not doc["commands"]:
        t.append("  none\n", "dim")
    for c in doc["commands"]:
        t.append(f"  {_hm(c['at'])}  {c['id']}  {c['type']}  ")
        t.append(c["status"], "red" if c["status"] in ("failed", "rolled_back") else "")
        t.append(("  autonomous" if c["autonomous"] else "  human") + (f"  {c['service']}" if c["service"] else "")
                 + "\n", "dim")

    t.append(f"\nIncidents ({plural(doc['incidentsInWindow'], 'incident')} in the window)\n", "bold")
    if not doc["incidents"]:
        t.append("  none\n", "dim")
    for i in doc["incidents"]:
        t.append(f"  {_hm(i['at'])}  {i['id']}  ")
        t.append(i["severity"], SEVERITY_STYLE.get(i["severity"], ""))
        if i["commandId"]:
            who = f"{i['commandType']}, {'autonomous' if i['autonomous'] else 'human'}" if i["commandType"] \
                else "not in the store"
            t.append(f"  names {i['commandId']} ({who})", "dim")
        if i["matches"]:
            t.append("  ← matches the condition", "bold")
        t.append("\n")
    if doc["safety"]:
        t.append(f"\nSafety events ({doc['safetyInWindow']} in the window)\n", "bold")
        for s in doc["safety"]:
            t.append(f"  {_hm(s['at'])}  {s['type']}\n")

    e = doc["effect"]
    t.append("\nEffect\n", "bold")
    t.append(f"  {e['summary']}\n", "yellow" if e["shadow"] else "")
    if e["text"] and e["text"] != e["summary"] and not e["shadow"]:
        t.append(f"  at the trip: {e['text']}\n", "dim")

    t.append("\nResolution\n", "bold")
    r = doc["resolution"]
    if r is None:
        t.append(f"  open: resolve it with a note (console key r, or `govcon events resolve {doc['id']} --note …`)\n",
                 "dim")
    else:
        t.append(f"  by {r['by']} at {_t(r['at'])}" + (" · false positive" if r["falsePositive"] else "") + "\n")
        t.append(f"  {r['note']}\n")
    t.rstrip()
    return t
