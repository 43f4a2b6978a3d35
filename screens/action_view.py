"""What screen 8 (Actions) shows, read from the store in a worker thread and handed over as plain values:
the action requests waiting for a human, the grants in flight, and the recent outcomes (grants that
finished, requests rejected or expired). Also the words the screen and its `a`/`x` keys share: times
relative to the store's clock, the roles that may decide a request, why an operator may not."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.text import Text

from engine.clock import isoformat
from engine.governance import Governance
from screens.fmt import parse_time
from storage import state_repo

RECENT = 40                     # recent outcomes shown
READ_LIMIT = 200                # rows read per part
DEFAULT_APPROVERS = ("on-call", "incident-commander", "ops-lead")   # DESIGN.md, "Action requests"
FINISHED_REQUEST = ("rejected", "expired")
IN_FLIGHT = "granted"


@dataclass(frozen=True)
class ActionsView:
    now: datetime
    pending: tuple[dict[str, Any], ...] = ()      # requests, soonest to expire first
    in_flight: tuple[dict[str, Any], ...] = ()    # grants, newest first
    outcomes: tuple[dict[str, Any], ...] = ()     # finished grants and requests, newest first, each with "kind"
    four_eyes_relaxed: bool = False
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    agents: tuple[dict[str, Any], ...] = ()       # agents and their leases (`govcon agents list`)
    drain: dict[str, Any] | None = None           # after the kill switch: what is still in flight, who has not heard


def four_eyes_relaxed(conn) -> bool:
    """Whether this store relaxes four eyes (the demo's scratch store only)."""
    state = state_repo.get_state(conn)
    return bool(state is not None and state.four_eyes_relaxed)


def finished_at(row: dict[str, Any]) -> str:
    """When an outcome happened: the grant's outcome (or its expiry), the request's decision (or expiry)."""
    if row["kind"] == "grant":
        return row.get("outcomeAt") or row["expiresAt"]
    return row.get("decidedAt") or row["expiresAt"]


def load_actions(gov: Governance) -> ActionsView:
    """Three reads through the ActionBook (pending, in flight, recent), split as the screen shows them."""
    if getattr(gov, "remote", False):  # client mode: the service reads them in one call (console/client.py)
        return gov.console_read("actions")  # type: ignore[attr-defined]
    book = gov.actions
    now = gov.clock.now()
    pending = book.list(pending=True, limit=READ_LIMIT)["requests"]
    flying = book.list(in_flight=True, limit=READ_LIMIT)["grants"]
    recent = book.list(limit=READ_LIMIT)
    agents = tuple(gov.agents.list()["agents"])
    with gov.store.read() as conn:
        state = state_repo.get_state(conn)
        drain = gov.agents.drain(conn, state.kill_switch_at, now) if state and state.kill_switch_engaged else None
    stamp = isoformat(now)
    outcomes = [dict(g, kind="grant") for g in recent["grants"] if g["status"] != IN_FLIGHT]
    # a grant past its expiry that the expiry job has not reached yet has no outcome all the same
    outcomes += [dict(g, kind="grant", status="expired") for g in recent["grants"]
                 if g["status"] == IN_FLIGHT and g["expiresAt"] <= stamp]
    outcomes += [dict(r, kind="request") for r in recent["requests"] if r["status"] in FINISHED_REQUEST]
    outcomes.sort(key=lambda row: (finished_at(row), row.get("grantId") or row["requestId"]), reverse=True)
    pending_rows = tuple(sorted((dict(r, kind="request") for r in pending),
                                key=lambda r: (r["expiresAt"], r["requestId"])))
    flight_rows = tuple(dict(g, kind="grant") for g in flying)
    outcome_rows = tuple(outcomes[:RECENT])
    by_id = {row_id(r): r for r in (*outcome_rows, *flight_rows, *pending_rows)}
    return ActionsView(now, pending_rows, flight_rows, outcome_rows,
                       bool(state is not None and state.four_eyes_relaxed), by_id, agents, drain)


def drain_line(drain: dict[str, Any]) -> str:
    """After the kill switch: has automation stopped? (the runbook's critical procedure asks for it)"""
    if drain["stopped"]:
        return (f"kill switch engaged: automation STOPPED (no grant in flight; {drain['agentsAcknowledged']} "
                f"agent(s) told at their beat, {len(drain['agentsLapsed'])} lapsed)")
    waiting = ", ".join(a["name"] for a in drain["agentsNotBeaten"][:3]) or "none"
    return (f"kill switch engaged, draining: {drain['grantsInFlight']} grant(s) in flight, "
            f"{len(drain['agentsNotBeaten'])} agent(s) not yet told ({waiting})")


def row_id(row: dict[str, Any]) -> str:
    return row["grantId"] if row["kind"] == "grant" else row["requestId"]


def approvers(request: dict[str, Any]) -> tuple[str, ...]:
    return tuple(request.get("approverRoles") or ()) or DEFAULT_APPROVERS


def scope(row: dict[str, Any]) -> str:
    """"restart_service on api" (or the type alone when the ask named no service)."""
    return row["commandType"] + (f" on {row['service']}" if row.get("service") else "")


# --- who may decide ------------------------------------------------------------------------------


def role_refusal(request: dict[str, Any], operator: str, roles: Iterable[str]) -> str | None:
    """Why ``operator`` may not decide ``request`` at all (no approver role), or None."""
    needed, held = approvers(request), set(roles)
    if held.intersection(needed):
        return None
    return (f"deciding {request['requestId']} ({scope(request)}) needs one of the roles {', '.join(needed)}; "
            f"{operator} holds {', '.join(sorted(held)) or 'no role'}. An admin can grant it: "
            f"govcon roles grant {operator} {needed[0]}")


def four_eyes_refusal(request: dict[str, Any], operator: str, relaxed: bool) -> str | None:
    if relaxed or operator != request.get("requestedBy"):
        return None
    return f"{operator} asked for {request['requestId']} and cannot approve it too: another approver must"


def approval_refusal(status: dict[str, Any] | None) -> str | None:
    """What in the governance state forbids approving any action now (the kill switch, read_only)."""
    if status is None:
        return None
    ks = status.get("killSwitch") or {}
    if ks.get("engaged"):
        return (f"the kill switch is engaged (by {ks.get('by')}: {ks.get('reason')}): no action may be approved "
                "until it is released")
    if status.get("mode") == "read_only":
        return ("mode read_only: no action may be approved; set the mode back first "
                "(govcon mode set normal --reason …)")
    return None


# --- time, as the operator reads it --------------------------------------------------------------


def span(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d"


def expires_in(now: datetime, when: str | datetime | None) -> str:
    at = parse_time(when)
    if at is None:
        return "–"
    left = (at - now).total_seconds()
    return f"in {span(left)}" if left > 0 else f"{span(left)} ago"


def ago(now: datetime, when: str | datetime | None) -> str:
    at = parse_time(when)
    if at is None:
        return "–"
    past = (now - at).total_seconds()
    return f"{span(past)} ago" if past >= 0 else f"in {span(past)}"


def reliability_text(cal: dict[str, Any] | None, *, width: int = 20) -> Text:
    """The reliability plot of an agent's calibration (engine/calibration.py, `to_json`): per confidence
    bin, the stated confidence (░, the mean the agent said) against the observed success share (█), on
    one 0–1 scale, with the outcome count; empty bins say so (null figures, not zeros)."""
    t = Text()
    if cal is None:
        return Text("calibration: reading…", "dim")
    brier, ece = cal.get("brier"), cal.get("ece")
    t.append("Calibration", "bold")
    t.append(f" (stated vs observed, {cal['outcomes']} outcomes · Brier "
             f"{'–' if brier is None else f'{brier:.3f}'} · ECE {'–' if ece is None else f'{ece:.3f}'})\n")
    if not cal["outcomes"]:
        t.append("no outcomes yet: the gate uses the stated confidence (and says so)\n", "dim")
        return t
    t.append(f"{'bin':<8} {'stated ░ / observed █':<{width + 6}} {'n':>5}\n", "dim")
    for b in reversed(cal["bins"]):
        label = f"{b['low']:.1f}–{b['high']:.1f}"
        if not b["count"]:
            t.append(f"{label:<8} {'–':<{width + 6}} {0:>5}\n", "dim")
            continue
        stated, observed = b["statedMean"] or 0.0, b["observed"] or 0.0
        t.append(f"{label:<8} ")
        t.append("░" * round(stated * width), "cyan")
        t.append(f" {stated:.2f}\n{'':<8} ")
        few = b["count"] < cal.get("minOutcomes", 10)
        style = "yellow" if few else ("green" if observed >= stated - 0.05 else "red")
        t.append("█" * round(observed * width), style)
        t.append(f" {observed:.2f}".ljust(width + 6 - round(observed * width)) + f"{b['count']:>5}")
        t.append("  too few: stated used\n" if few else "\n", "dim" if few else "")
    return t
