"""The weekly governance report as Markdown (after seed 000's reports/templates/weekly-report.md)."""

from __future__ import annotations

from typing import Any


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%"


def _delta(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "–"
    d = (now - before) * 100
    return f"{d:+.2f} pp"


def _count_delta(now: int, before: int) -> str:
    return f"{now - before:+d}"


def render(report: dict[str, Any]) -> str:
    m, prev = report["metrics"], report.get("previousMetrics") or {}
    r = report["readiness"]
    lines = [
        f"# Governance report {report['id']}",
        "",
        f"*{report['timestamp']}* · phase **{r['currentPhase']}** · recommendation **{report['recommendation']}**",
        "",
        "## Metrics (last 7 days, change on the week before)",
        "",
        "| metric | this week | change |",
        "|---|---:|---:|",
    ]
    pc = prev.get("commands", {})
    for key in ("total", "succeeded", "failed", "rolledBack", "proposed", "approved"):
        delta = _count_delta(m['commands'][key], pc.get(key, 0))
        lines.append(f"| {key} commands | {m['commands'][key]:,} | {delta} |")
    pr = prev.get("rates", {})
    for key, value in m["rates"].items():
        lines.append(f"| {key} | {_pct(value)} | {_delta(value, pr.get(key))} |")
    inc = m["incidents"]
    lines += [f"| incidents (critical / from autonomous) | {inc['total']} ({inc['critical']} / "
              f"{inc['fromAutonomousActions']}) | "
              f"{_count_delta(inc['total'], prev.get('incidents', {}).get('total', 0))} |",
              "", "## Readiness", "",
              f"Overall **{_pct(r['overall']['score'])}** ({r['overall']['points']}/{r['overall']['possible']} points)"
              f" — {'ready' if r['overall']['ready'] else 'not ready'}", ""]
    if r["overall"]["blockers"]:
        lines.append("Blockers: " + "; ".join(r["overall"]["blockers"]))
        lines.append("")
    lines += ["| category | score |", "|---|---:|"]
    for cat in ("technical", "process", "organizational"):
        lines.append(f"| {cat} | {_pct(r[cat]['score'])} |")
    lines += ["", "## Recommendation", ""]
    for rec in r.get("recommendations", []):
        lines.append(f"- **{rec['type']}** ({rec['priority']}): {rec['rationale']}")
    lines += ["", "## Circuit-breaker events this week", ""]
    events = report["circuitBreakerEvents"]
    if not events:
        lines.append("None.")
    for e in events:
        state = "resolved" if e["resolved"] else "**open**"
        scope = f" ({e['commandType']})" if e["commandType"] else ""
        fp = ", false positive" if e.get("falsePositive") else ""
        lines.append(f"- {e['timestamp']} {e['severity']} — {e['ruleName']}{scope}: {e['action']}, {state}{fp}")
    reversions = report.get("validationReversions") or []
    if reversions:
        lines += ["", "## Reversions during a validation period", ""]
        for rv in reversions:
            lines.append(f"- {rv['at']}: reverted to L3 during the validation of proposal {rv['proposalId']}"
                         + (f" (breaker event {rv['breakerEventId']})" if rv.get("breakerEventId") else ""))
    lines += ["", "## Proposal", ""]
    p = report.get("proposal")
    if p is None:
        lines.append(f"No proposal: {report.get('proposalNote', 'not ready')}.")
    else:
        e = p["expansion"]
        lines += [f"**{p['proposalId']}**: {e['currentPhase']} → {e['targetPhase']}, "
                  f"validation {e['validationPeriod']} days, risk {p['riskAssessment']['level']}",
                  "", "Commands to whitelist:"]
        for c in p["rationale"]["commandChoices"]:
            if c["chosen"]:
                lines.append(f"- `{c['commandType']}` — {c['reason']}")
        lines += ["", f"Required approvals: {', '.join(p['requiredApprovals'])}"]
    lines.append("")
    return "\n".join(lines)
