"""The status header on every screen: phase badge, kill switch, validation period, leader, store health.

Two lines, so that at 80 columns nothing is cut: line 1 says whether autonomy is safe right now, line 2
who is looking and whether the data is live.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from screens.data import LiveData
from screens.fmt import safe
from screens.repaint import update_in_place

PHASE_STYLE = {"L3": "bold black on green", "L3+": "bold black on yellow", "L4": "bold black on dark_orange",
               "L4+": "bold white on red", "L5": "bold white on magenta"}


def header_lines(live: LiveData | None, *, operator: str, screen: str, demo: bool,
                 scheduler: str) -> tuple[Text, Text]:
    top, bottom = Text(no_wrap=True, overflow="ellipsis"), Text(no_wrap=True, overflow="ellipsis")
    s = live.status if live is not None else None
    marker = live.marker if live is not None else None  # read afresh each second, even without the store
    if s is None:
        top.append(" … ", "reverse")
        if marker is not None:
            top.append("  KILL SWITCH ENGAGED", "bold white on red")
            top.append(f" by {marker['by'] or 'unknown'} (marker file)", "bold red")
        top.append("  loading…" if live is None or live.error is None else "  no data")
    else:
        phase = s["currentPhase"]
        top.append(f" {phase} ", PHASE_STYLE.get(phase, "reverse"))
        ks = s["killSwitch"]
        if ks["engaged"] or marker is not None:
            top.append("  KILL SWITCH ENGAGED", "bold white on red")
            by = ks["by"] if ks["engaged"] or marker is None else marker["by"]
            top.append(f" by {by or 'unknown'}", "bold red")
            if marker is not None:
                top.append(" (marker file)", "bold red")
        else:
            top.append("  kill switch off", "green")
        mode = s.get("mode") or "normal"
        if mode != "normal":  # seed 003's degraded modes: the gate allows less than the phase says
            top.append(f"  MODE {mode.upper().replace('_', '-')}", "bold black on yellow")
        n = s["unresolvedEvents"]
        top.append(f"  · {n} unresolved" if n else "  · no open events", "bold red" if n else "")
        for ctype, left in sorted((s.get("halfOpen") or {}).items()):  # probing its way back to autonomy
            top.append(f"  · HALF-OPEN {ctype} ({left} left)", "bold yellow")
        waiting = s.get("pendingRequests") or 0
        if waiting:  # action requests waiting for a human: screen 8
            top.append(f"  · {waiting} to approve", "bold yellow")
        dead = live.dead_alerts if live is not None else 0
        if dead:  # an alert that never reached its sink: someone was not paged
            top.append(f"  · {dead} alert{'s' if dead > 1 else ''} undelivered", "bold yellow")
        vp = s.get("validationPeriod")
        top.append(f"  · validation {vp['daysLeft']}d left" if vp else "  · no validation period")
        if s.get("breakerMode") == "shadow":
            top.append("  · SHADOW MODE", "bold yellow")
    if live is not None and live.error:
        bottom.append(" STORE UNREACHABLE ", "bold white on red")
        # how stale what is shown is, before the error (at 80 columns the end of the line is cut)
        bottom.append(f" shown: read {live.at:%H:%M:%S}Z ·" if s is not None else " nothing read yet ·", "bold")
        bottom.append(f" {live.error.splitlines()[0]}", "red")
        return top, bottom
    bottom.append(f"[{screen}] ", "bold")
    if live is not None:  # how stale the screen is comes first: at 80 columns the end of the line is cut
        bottom.append(f"read {live.at:%H:%M:%S}Z · ", "dim")
    bottom.append("store ok", "green")
    leader = s.get("leader") if s else None
    if leader:
        bottom.append(f" · leader {leader['holder']}", "" if leader["alive"] else "yellow")
        if not leader["alive"]:
            bottom.append(" (lease expired)", "yellow")
    else:
        bottom.append(" · no scheduler leader", "yellow")
    roles = ",".join(sorted(live.roles)) if live is not None and live.roles else "no roles"
    bottom.append(f" · {operator} ({roles})")
    if scheduler:
        bottom.append(f" · {scheduler}", "dim")
    if demo:
        bottom.append("\n")
        bottom.append(" DEMO ", "bold white on magenta")
        bottom.append(" scratch store: you hold every role, four-eyes is relaxed here only", "magenta")
    return top, bottom


class StatusHeader(Static):
    DEFAULT_CSS = """
    StatusHeader {
        dock: top; height: auto; background: $panel; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def show(self, live: LiveData | None, *, operator: str, screen: str, demo: bool, scheduler: str) -> None:
        top, bottom = header_lines(live, operator=operator, screen=screen, demo=demo, scheduler=scheduler)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append_text(top)
        text.append("\n")
        text.append_text(bottom)
        # paused types and the kill switch's reason come from agents and operators; the read time changes
        # every second, the height (two lines, three in the demo) almost never: no layout for it
        update_in_place(self, safe(text))
