"""Plain-text renderings for the CLI (the JSON documents are the contract; these are for people).

Command types, services, agents, reasons, notes and rule names come from agents and other operators: a
terminal escape in one must not clear, recolour or rewrite the operator's screen. ``clean`` shows every
control character (C0, DEL, C1, bidi overrides and other format characters, line separators) escaped,
e.g. ``\x1b``; ``CleanStream`` applies it to everything the CLI writes, keeping only its own newlines and tabs.
``--json`` needs nothing: ``json.dumps`` escapes them all (``ensure_ascii``).
"""

from __future__ import annotations

import logging
from typing import Any, TextIO

from screens.fmt import clean as escape_controls


def clean(value: Any, *, keep: str = "") -> str:
    """``value`` as text with each non-printable character escaped (``\x1b``, ``\r``, ``\u202e``) but the
    characters in ``keep``; lists are joined with ", ". The rule is screens/fmt.py's, shared with the console."""
    text = value if isinstance(value, str) else ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return escape_controls(text, keep=keep)


class CleanStream:
    """A text stream that escapes control characters in whatever is written to it (keeping newlines and
    tabs): the CLI's stdout and stderr, so that no printer can forget. ``stream`` is the raw stream, for
    govcon's own control characters (the progress bar's ``\r``) and nothing from outside."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(clean(text, keep="\n\t"))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, getvalue …
        return getattr(self.stream, name)


class CleanFormatter(logging.Formatter):
    """Log lines for a terminal: an alert about command type ``x\x1b[2J`` must not clear the screen."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record), keep="\n\t")


def pct(x: float | None, digits: int = 2) -> str:
    return "unknown" if x is None else f"{x * 100:.{digits}f}%"


def _line(out: TextIO, label: str, value: str) -> None:
    out.write(f"{label:<14}{clean(value)}\n")


def print_status(doc: dict[str, Any], out: TextIO) -> None:
    _line(out, "Phase", f"{doc['currentPhase']} since {doc['phaseStartDate']}")
    vp = doc.get("validationPeriod")
    if vp:
        _line(out, "Validation", f"{vp['daysLeft']} days left (until {vp['until']})")
    _line(out, "Whitelist", clean(doc["commandWhitelist"]) or "(none)")
    _line(out, "Paused", clean(doc["pausedCommandTypes"]) or "(none)")
    if doc.get("halfOpen"):  # on probation after a pause: one probe at a time (engine/recovery.py)
        _line(out, "Half-open", ", ".join(f"{t} ({n} probe{'s' if n != 1 else ''} left)"
                                          for t, n in sorted(doc["halfOpen"].items())))
    ks = doc["killSwitch"]
    _line(out, "Kill switch", f"ENGAGED by {clean(ks['by'])} at {ks['at']}: {clean(ks['reason'])}" if ks["engaged"]
          else "released")
    marker = ks.get("marker")
    if marker and marker["engaged"]:  # the second path: engaged while the store could not be written
        _line(out, "Marker file", f"{marker['path']} is present: the kill switch is engaged by it")
    _line(out, "Breakers", f"{doc['breakerMode']} mode, {doc['unresolvedEvents']} unresolved events")
    if "mode" in doc:
        _line(out, "Mode", doc["mode"] if doc["mode"] == "normal" else f"{doc['mode'].upper()} (degraded)")
    if "grantsInFlight" in doc:
        _line(out, "Actions", f"{doc['grantsInFlight']} grants in flight, {doc['pendingRequests']} requests "
                              "waiting for approval")
    drain = doc.get("drain")
    if drain:  # after the kill switch: is automation really stopped? (engine/agents.py AgentBook.drain)
        waiting = [a["name"] for a in drain["agentsNotBeaten"]]
        _line(out, "Drain", ("STOPPED: " if drain["stopped"] else "draining: ")
              + f"{drain['grantsInFlight']} grants in flight, {drain['agentsAcknowledged']} agents acknowledged "
              + f"since {drain['since']}, {len(waiting)} not beaten since"
              + (f" ({', '.join(waiting[:10])}{' …' if len(waiting) > 10 else ''})" if waiting else "")
              + (f", {len(drain['agentsLapsed'])} lapsed" if drain["agentsLapsed"] else ""))
        for g in drain["grants"]:
            _line(out, "  in flight", f"{g['grantId']} {g['commandType']} by {g['agent']} (expires {g['expiresAt']})")
    leader = doc.get("leader")
    if leader:
        _line(out, "Scheduler", f"{leader['holder']} ({'alive' if leader['alive'] else 'lease expired'})")
    else:
        _line(out, "Scheduler", "no leader (no console or `govcon serve` running)")
    if doc.get("readinessScore") is not None:
        _line(out, "Readiness", pct(doc["readinessScore"], 1))


def print_ingest(report, out: TextIO, err: TextIO) -> None:
    for e in report.errors:
        err.write(f"rejected {clean(e)}\n")
    if report.rejected > len(report.errors):
        err.write(f"... and {report.rejected - len(report.errors)} more rejected lines\n")
    out.write(f"accepted {report.accepted:,}, duplicate {report.duplicate:,}, rejected {report.rejected:,}\n")


def print_metrics(doc: dict[str, Any], out: TextIO) -> None:
    p = doc["period"]
    out.write(f"Period {p['start']} .. {p['end']}\n\n")
    c = doc["commands"]
    out.write("Commands   " + "  ".join(f"{k} {v:,}" for k, v in c.items()) + "\n")
    out.write("Rates      " + "  ".join(f"{k} {pct(v)}" for k, v in doc["rates"].items()) + "\n")
    out.write("Incidents  " + "  ".join(f"{k} {v:,}" for k, v in doc["incidents"].items()) + "\n")
    out.write("Safety     " + "  ".join(f"{k} {v:,}" for k, v in doc["safety"].items()) + "\n")


def print_readiness(doc: dict[str, Any], out: TextIO) -> None:
    o = doc["overall"]
    verdict = "READY" if o["ready"] else "not ready"
    out.write(f"Readiness {pct(o['score'], 1)} ({o['points']}/{o['possible']} points): {verdict}\n")
    if o["blockers"]:
        out.write("Blockers: " + "; ".join(o["blockers"]) + "\n")
    for category in ("technical", "process", "organizational"):
        cat = doc[category]
        out.write(f"\n{category.capitalize()} {pct(cat['score'], 1)}\n")
        for item in cat["items"]:
            mark = "PASS" if item["status"] else ("FAIL" if item["required"] else "miss")
            req = "*" if item["required"] else " "
            out.write(f"  [{mark}] {req}{item['name']} ({item['weight']})  {item['details']}\n")
    out.write("\nRecommendation: ")
    for rec in doc["recommendations"]:
        out.write(f"{rec['type']} ({rec['priority']}): {rec['rationale']}\n")
    out.write("* required\n")


def print_audit(entries: list[dict[str, Any]], out: TextIO) -> None:
    for e in entries:
        reason = f" — {clean(e['reason'])}" if e["reason"] else ""
        out.write(f"{e['seq']:>6} {e['at']} {clean(e['actor']):<12} {clean(e['action']):<22} {clean(e['target'])}"
                  f"{reason}\n")
    if not entries:
        out.write("(no audit entries)\n")


def print_roles(grants: list[dict[str, Any]], out: TextIO) -> None:
    for g in grants:
        out.write(f"{g['operator']:<20} {g['role']:<20} granted by {g['grantedBy']} {g['grantedAt']}\n")
    if not grants:
        out.write("(no roles granted)\n")


def print_events(events: list[dict[str, Any]], out: TextIO) -> None:
    for e in events:
        state = "resolved" if e["resolved"] else "OPEN"
        shadow = " [shadow]" if e["shadow"] else ""
        scope = f" {clean(e['commandType'])}" if e["commandType"] else ""
        out.write(f"{e['id']}  {e['timestamp']}  {e['severity']:<8} {state:<8} {clean(e['ruleName'])}{scope}"
                  f"  -> {e['action']}{shadow}\n")
    if not events:
        out.write("(no breaker events)\n")


def print_alerts(alerts: list[dict[str, Any]], out: TextIO) -> None:
    for a in alerts:
        when = {"pending": f"next try {a['nextAttemptAt']}", "sent": f"sent {a['sentAt']}",
                "dead": "DEAD (superseded by its resolve)" if a["superseded"] else "DEAD",
                "dismissed": "dismissed"}[a["status"]]
        out.write(f"{a['id']:>6}  {a['createdAt']}  {a['sink']:<12} {a['severity']:<8} {a['kind']:<8} "
                  f"{when}  attempts {a['attempts']}  {a['title'] or a['dedupKey']}\n")
        if a["lastError"] and a["status"] != "sent":
            out.write(f"        last error: {a['lastError']}\n")
    if not alerts:
        out.write("(no alerts waiting or dead-lettered)\n")


def print_rules(rules: list[dict[str, Any]], out: TextIO, *, detail: bool = False) -> None:
    for r in rules:
        st = r["statistics"]
        fp = "-" if st["falsePositiveRate"] is None else pct(st["falsePositiveRate"], 0)
        on = "on " if r["enabled"] else "off"
        shadow = "  SHADOW: records only" if r["shadow"] else ""
        out.write(f"[{on}] {clean(r['name']):<28} {clean(r['condition']):<36} {r['window']:>4} {r['action']:<19} "
                  f"{r['alertSeverity']:<8} trips {st['trips']} fp {fp} last {st['lastTrip'] or '-'}{shadow}\n")
        if detail:
            out.write(f"      min samples {r['minSamples']}; resolved {st['resolved']}, "
                      f"false positives {st['falsePositives']}, shadow trips {st['shadowTrips']}\n")
            if r["action"] == "pause_command_type" and "recovery" in r:
                how = (f"half-open after resolution, {r['probes']} probe(s) close it" if r["recovery"] == "half_open"
                       else "manual: resolving unpauses at once")
                cooldown = f"; re-opens by itself after {r['cooldown']}" if r.get("cooldown") else ""
                out.write(f"      recovery {how}{cooldown}\n")


def _observed_text(observed: Any) -> str:
    """A trip's observed values as `errorRate 7.14%, samples 42` (rates as percentages), not a dict."""
    if not isinstance(observed, dict):
        return str(observed)
    return ", ".join(f"{k} {v * 100:.2f}%" if isinstance(v, float) and "rate" in k.lower() else f"{k} {v}"
                     for k, v in observed.items())


def print_backtest(doc: dict[str, Any], out: TextIO) -> None:
    out.write(f"{doc['condition']} over {doc['window']}, {doc['from']} .. {doc['to']} "
              f"({doc['windowsJudged']:,} windows, one every {doc['stepSeconds']}s)\n")
    times = "once" if doc["trips"] == 1 else f"{doc['trips']} times"
    out.write(f"would have tripped {times}: {doc['tripsWithIncidentNearby']} with an incident "
              f"nearby, {doc['tripsWithoutIncident']} without\n")
    for t in doc["tripTimes"][:50]:
        scope = f" {t['commandType']}" if t["commandType"] else ""
        near = ", ".join(t["incidentsNearby"]) or "no incident nearby"
        out.write(f"  {t['at']}{scope}  {_observed_text(t['observed'])}  [{near}]\n")
    if len(doc["tripTimes"]) > 50:
        out.write(f"  ... {len(doc['tripTimes']) - 50} more (use --json)\n")


def print_proposals(docs: list[dict[str, Any]], out: TextIO, *, detail: bool = False) -> None:
    for p in docs:
        e = p["expansion"]
        approvals = ", ".join(f"{a['role']}={a['approver']}" for a in p["approvals"]) or "none yet"
        out.write(f"{p['proposalId']}  {p['status']:<8} {e['currentPhase']} -> {e['targetPhase']}  "
                  f"{', '.join(e['commandsToWhitelist'])}  approvals: {approvals}"
                  + (f"; still needed: {', '.join(p['stillNeeded'])}" if p["status"] == "pending" else "") + "\n")
        if detail:
            out.write(f"  created {p['timestamp']} by {p['triggeredBy']}, expires {p['expiresAt']}, "
                      f"validation {e['validationPeriod']} days, risk {p['riskAssessment']['level']}\n")
            for c in p["rationale"].get("commandChoices", []):
                mark = "+" if c["chosen"] else "-"
                out.write(f"  {mark} {c['commandType']}: {c['reason']}\n")
            for m in p["riskAssessment"]["mitigations"]:
                out.write(f"  mitigation: {m}\n")
            out.write(f"  rollback plan: {p['riskAssessment']['rollbackPlan']}\n")
    if not docs:
        out.write("(no proposals)\n")


def print_policies(doc: dict[str, Any], out: TextIO) -> None:
    p = doc["policy"]
    if p is None:
        out.write(f"no policy applies to {doc['commandType']}: the whitelist and phase alone decide\n")
    else:
        out.write(f"policy {p['name']} applies to {doc['commandType']}:\n")
        for k, v in p.items():
            out.write(f"  {k:<26} {v}\n")
    others = [q["name"] for q in doc["policies"] if p is None or q["name"] != p["name"]]
    if others:
        out.write(f"other policies: {', '.join(others)}\n")
