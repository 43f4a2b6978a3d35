"""Proposals (key 4): the whole scope-expansion proposal — evidence, commands to whitelist and why each
was chosen, risk, approvals so far and still needed. `a` approves as one of your roles, `x` rejects."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import DataTable, Static

from screens.base import GovScreen
from screens.data import LiveData
from screens.fmt import matches, pct, safe, short_time
from screens.widgets import DetailPane, Pane, Table

STATUS_STYLE = {"pending": "bold yellow", "approved": "green", "rejected": "red", "expired": "dim"}


def proposal_detail(p: dict[str, Any] | None) -> Text:
    if p is None:
        return Text("no proposal selected", "dim")
    e = p["expansion"]
    t = Text()
    t.append(f"{p['proposalId']}  {e['currentPhase']} → {e['targetPhase']}  ", "bold")
    t.append(p["status"].upper(), STATUS_STYLE.get(p["status"], ""))
    if p["status"] == "pending" and p.get("expiresAt"):
        t.append(f" · expires {short_time(p['expiresAt'])}")
    t.append(f"\nproposed {short_time(p['timestamp'])} by {p['proposedBy']}"
             + (f" (cycle run by {p['triggeredBy']})" if p.get("triggeredBy") else "")
             + f" · validation period {e['validationPeriod']} days\n", "dim")
    rationale = p.get("rationale") or {}
    t.append("\nEvidence\n", "bold")
    for line in rationale.get("keyAchievements", []):
        t.append(f"  • {line}\n")
    ready = rationale.get("readiness") or {}
    if ready:
        t.append(f"  readiness {pct(ready.get('score'))}" + (", blockers: " + "; ".join(ready["blockers"])
                                                             if ready.get("blockers") else ", no blockers") + "\n")
    t.append("\nCommands to whitelist\n", "bold")
    choices = rationale.get("commandChoices") or [{"commandType": c, "chosen": True, "reason": ""}
                                                  for c in e["commandsToWhitelist"]]
    for c in choices:
        if c.get("chosen", True):
            t.append(f"  ✓ {c['commandType']}", "green")
            t.append(f" — {c['reason']}\n" if c.get("reason") else "\n")
    left_out = [c for c in choices if not c.get("chosen", True)]
    for c in left_out:
        t.append(f"  · not {c['commandType']}: {c['reason']}\n", "dim")
    risk = p.get("riskAssessment") or {}
    if risk:
        t.append(f"\nRisk: {risk.get('level', '?')}\n", "bold")
        for m in risk.get("mitigations", []):
            t.append(f"  • {m}\n")
        if risk.get("rollbackPlan"):
            t.append(f"  rollback: {risk['rollbackPlan']}\n")
    t.append("\nApprovals\n", "bold")
    t.append(f"  required: {', '.join(p['requiredApprovals'])}\n")
    for a in p.get("approvals", []):
        t.append(f"  ✓ {a['role']} by {a['approver']} at {short_time(a['at'])}\n", "green")
    if p["status"] == "pending":
        still = p.get("stillNeeded") or []
        t.append(f"  still needed: {', '.join(still) or 'none'}\n", "bold yellow" if still else "")
    elif p.get("decidedBy"):
        t.append(f"  {p['status']} by {p['decidedBy']} at {short_time(p.get('decidedAt'))}"
                 + (f": {p['reason']}" if p.get("reason") else "") + "\n")
    return t


class ProposalsScreen(GovScreen):
    SCREEN_NAME = "proposals"
    SCREEN_TITLE = "4 Proposals"
    FILTER_WHAT = "proposals (id, phase, status, command type)"

    def __init__(self) -> None:
        super().__init__()
        self.proposals: list[dict[str, Any]] | None = []

    def compose_body(self) -> ComposeResult:
        with Container(id="split"):
            yield Pane(Table(("proposal", "created", "phases", "status", "still needed"), id="proposals"),
                       Static("loading…", id="proposals-note"),
                       title="Proposals  (a approve · x reject)", id="pane-proposals", classes="list")
            yield DetailPane(Static("", id="proposal-detail"), title="Proposal", id="pane-proposal", classes="detail")

    def on_mount(self) -> None:
        self.query_one("#proposals", Table).focus()

    def reload(self) -> None:
        book = self.app.gov.proposals
        self.load("proposals", lambda: book.list())

    def on_live(self, live: LiveData) -> None:
        pending_now = {p["proposalId"]: p for p in live.pending or ()}
        shown = {p["proposalId"]: p for p in self.proposals or () if p["status"] == "pending"}
        if pending_now != shown:
            self.reload()

    def loaded(self, key: str, value: Any) -> None:
        self.proposals = value
        self._redraw()

    def _redraw(self) -> None:
        if self.proposals is None:
            return  # not read yet
        visible = [p for p in self.proposals if not self.filter_text or matches(
            self.filter_text, p["proposalId"], p["status"], p["expansion"]["targetPhase"],
            *p["expansion"]["commandsToWhitelist"])]
        self.query_one("#proposals", Table).set_rows(
            (p["proposalId"], (p["proposalId"], short_time(p["timestamp"]),
                               f"{p['expansion']['currentPhase']}→{p['expansion']['targetPhase']}",
                               Text(p["status"], STATUS_STYLE.get(p["status"], "")),
                               ", ".join(p.get("stillNeeded") or []) if p["status"] == "pending" else ""))
            for p in visible)
        self.query_one("#proposals-note", Static).update(
            f"{len(visible)} of {len(self.proposals)}" if self.proposals else
            "no proposals yet: the governance cycle (c) drafts one when readiness is at least 95% with no "
            "blockers and no open breaker events")
        self._show_detail()

    @on(DataTable.RowHighlighted, "#proposals")
    def _show_detail(self) -> None:
        self.query_one("#proposal-detail", Static).update(safe(proposal_detail(self.selected_proposal())))

    def selected_proposal(self) -> dict[str, Any] | None:
        key = self.query_one("#proposals", Table).selected_key
        return next((p for p in self.proposals or () if p["proposalId"] == key), None)

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self._redraw()
