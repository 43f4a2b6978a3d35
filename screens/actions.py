"""The contract's action keys (a, x, r, L, !, c, /, ?): each checks what it can, opens a confirmation
that names what will happen, and runs the change through the Governance facade in a worker
(GovconApp.perform). Refusals from the engine arrive as notifications."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from screens.help import HelpModal
from screens.modals import Ask, ConfirmModal
from screens.request_keys import approve_request, reject_request

KILL_SWITCH_MODAL = "kill-switch-modal"
NOT_RECORDED = ("KILL SWITCH NOT ENGAGED: neither the store nor its marker file could be written ({error}). "
                "The gate already denies every command while it cannot read the store; engage it from a host "
                "that reaches the store (govcon kill-switch engage --reason ...) or press ! again when the "
                "header shows the store is back.")


if TYPE_CHECKING:
    from textual.app import App

    from engine.governance import Governance
    from screens.base import GovScreen
    from screens.data import LiveData

    _AppBase = App[Any]
else:
    _AppBase = object


class ActionsMixin(_AppBase):
    """Mixed into GovconApp (self is the App)."""

    if TYPE_CHECKING:  # what GovconApp (screens/app.py) provides
        gov: Governance
        operator: str
        live: LiveData | None
        _kill_switch_mine: bool | None

        @property
        def gov_screen(self) -> GovScreen | None: ...

        def perform(self, fn: Callable[[], Any], done: Callable[[Any], str], *, title: str = "Done",
                    unavailable: str | None = None) -> None: ...

    # --- helpers ------------------------------------------------------------------------------

    def _status(self) -> dict[str, Any] | None:
        """The last state read from the store (possibly stale when the store is unreachable)."""
        return self.live.status if self.live is not None else None

    def _selected(self, what: str) -> dict[str, Any] | None:
        screen = self.gov_screen
        if screen is None:
            return None
        return screen.selected_proposal() if what == "proposal" else screen.selected_event()

    def _pending_proposal(self, verb: str) -> dict[str, Any] | None:
        p = self._selected("proposal")
        if p is None:
            self.notify(f"select a pending proposal to {verb} first (4 lists them; the dashboard shows the "
                        "pending ones)", title="Nothing selected", severity="warning")
            return None
        if p["status"] != "pending":
            self.notify(f"{p['proposalId']} is {p['status']}; only a pending proposal can be {verb}d",
                        title="Refused", severity="warning")
            return None
        return p

    # --- a, x: proposals ----------------------------------------------------------------------

    def _on_requests(self) -> bool:
        """Screen 8 lists action requests: there `a` and `x` decide them, elsewhere proposals."""
        return hasattr(self.gov_screen, "selected_request")

    def action_approve(self) -> None:
        if self._on_requests():
            approve_request(self, self.gov_screen)
            return
        p = self._pending_proposal("approve")
        if p is None:
            return
        e, pid, roles = p["expansion"], p["proposalId"], self.live.roles if self.live else frozenset()
        relaxed = self.live is not None and self.live.four_eyes_relaxed
        if p.get("triggeredBy") == self.operator and not relaxed:  # the engine checks it again
            self.notify(f"{self.operator} triggered {pid} and may not approve it too (four eyes): another "
                        "approver must", title="Not allowed", severity="error", markup=False)
            return
        still = p.get("stillNeeded") or []
        eligible = [r for r in still if r in roles]
        if not eligible:
            held = ", ".join(sorted(roles)) or "no role"
            self.notify(f"approving {pid} needs one of the roles it still needs ({', '.join(still)}); "
                        f"{self.operator} holds {held}", title="Not allowed", severity="error")
            return
        last = len(still) == 1
        whitelist = ", ".join(e["commandsToWhitelist"]) or "nothing"
        body = (f"This is the last approval needed: the transition is APPLIED at once — phase "
                f"{e['currentPhase']} → {e['targetPhase']}, whitelist + {whitelist}, a {e['validationPeriod']}-day "
                f"validation period starts." if last else
                f"Records your approval; after it, still needed: "
                f"{', '.join(r for r in still if r != eligible[0]) if len(eligible) == 1 else '(the other roles)'}.")
        ask = Ask(choices=tuple(eligible), choice_label="Approve as:") if len(eligible) > 1 else Ask()
        title = (f"Approve {pid}: {e['currentPhase']} → {e['targetPhase']}"
                 + ("" if ask.choices else f" as {eligible[0]}"))

        def done(result: dict[str, Any] | None) -> None:
            if result is None:
                return
            role = result["choice"] or eligible[0]
            book, actor = self.gov.proposals, self.operator

            def said(doc: dict[str, Any]) -> str:
                if doc["status"] == "approved":
                    return f"{pid} approved and applied: now at {doc['expansion']['targetPhase']}"
                return f"approved {pid} as {role}; still needed: {', '.join(doc['stillNeeded']) or 'none'}"
            self.perform(lambda: book.approve(actor, pid, role), said, title="Approved")

        self.push_screen(ConfirmModal(title, body, confirm="Approve", ask=ask), done)

    def action_reject(self) -> None:
        if self._on_requests():
            reject_request(self, self.gov_screen)
            return
        p = self._pending_proposal("reject")
        if p is None:
            return
        e, pid = p["expansion"], p["proposalId"]

        def done(result: dict[str, Any] | None) -> None:
            if result is None:
                return
            book, actor, reason = self.gov.proposals, self.operator, result["reason"]
            self.perform(lambda: book.reject(actor, pid, reason), lambda doc: f"rejected {pid}", title="Rejected")

        self.push_screen(ConfirmModal(
            f"Reject {pid}: {e['currentPhase']} → {e['targetPhase']}",
            "The proposal is closed as rejected; nothing changes in the phase or whitelist. The governance "
            "cycle may draft a new one later.", confirm="Reject", ask=Ask(reason_label="Reason:")), done)

    # --- r: resolve ---------------------------------------------------------------------------

    def action_resolve(self) -> None:
        ev = self._selected("event")
        if ev is None:
            self.notify("select a breaker event to resolve first (the dashboard lists the open ones, 2 all)",
                        title="Nothing selected", severity="warning")
            return
        if ev["resolved"]:
            self.notify(f"{ev['id']} was resolved already by {ev['resolvedBy']}", title="Refused",
                        severity="warning")
            return
        scope = f" ({ev['commandType']})" if ev["commandType"] else ""
        unpause = (f" It un-pauses {ev['commandType']}: the gate allows it autonomy again (unless another open "
                   "event pauses it)." if ev["action"] == "pause_command_type" and not ev["shadow"] else "")
        body = (f"Closes the event of {ev['ruleName']}{scope} from {ev['timestamp']}; the rule then judges only what "
                "happens or arrives after it."
                f"{unpause} The phase is not restored: a reversion stays until a new proposal is approved.")

        def done(result: dict[str, Any] | None) -> None:
            if result is None:
                return
            gov, actor, eid = self.gov, self.operator, ev["id"]
            note, fp = result["reason"], result["flag"]
            self.perform(lambda: gov.breakers.resolve(actor, eid, note=note, false_positive=fp),
                         lambda doc: f"resolved {doc['ruleName']}{scope}" + (" as a false positive" if fp else ""),
                         title="Resolved")

        self.push_screen(ConfirmModal(f"Resolve: {ev['ruleName']}{scope}", body, confirm="Resolve", danger=False,
                                      ask=Ask(reason_label="Note (what was found and done):",
                                              flag_label="false positive (the trip was not a real problem)")), done)

    # --- L, !: overrides ----------------------------------------------------------------------

    def action_revert(self) -> None:
        s = self._status()
        if s is not None and s["currentPhase"] == "L3" and not s["commandWhitelist"]:
            self.notify("already at L3 with an empty whitelist; nothing to revert", title="Nothing to do")
            return
        if s is None:
            body = "Phase → L3 and the whitelist cleared (the current state could not be read)."
        else:
            wl = s["commandWhitelist"]
            body = (f"Phase {s['currentPhase']} → L3 now; the whitelist is cleared ({len(wl)} types: "
                    f"{', '.join(wl) or 'none'}). Every command needs human approval again; alerts go out.")

        def done(result: dict[str, Any] | None) -> None:
            if result is None:
                return
            gov, actor, reason = self.gov, self.operator, result["reason"]
            self.perform(lambda: gov.overrides.revert(actor, reason), lambda r: r.message, title="Reverted to L3")

        self.push_screen(ConfirmModal("Revert to L3", body, confirm="Revert", ask=Ask(reason_label="Reason:")), done)

    def action_kill_switch(self) -> None:
        if any(s.id == KILL_SWITCH_MODAL for s in self.screen_stack):
            return  # the dialog is open already: Enter engages
        s = self._status()
        gov, actor = self.gov, self.operator
        if s is not None and s["killSwitch"]["engaged"]:
            ks = s["killSwitch"]

            def release(result: dict[str, Any] | None) -> None:
                if result is not None:
                    reason = result["reason"]
                    self._kill_switch_mine = False
                    self.perform(lambda: gov.overrides.kill_switch("release", actor, reason), lambda r: r.message,
                                 title="Kill switch")

            self.push_screen(ConfirmModal(
                "Release the kill switch",
                f"Engaged by {ks['by']} at {ks['at']}: {ks['reason']}. Releasing lets the gate allow autonomous "
                "actions again (within the phase and whitelist).", confirm="Release",
                ask=Ask(reason_label="Reason for releasing:"), id=KILL_SWITCH_MODAL), release)
            return

        def engage(result: dict[str, Any] | None) -> None:
            if result is not None:
                reason = result["reason"]
                self._kill_switch_mine = True
                self.perform(lambda: gov.overrides.kill_switch("engage", actor, reason), lambda r: r.message,
                             title="KILL SWITCH", unavailable=NOT_RECORDED)

        self.push_screen(ConfirmModal(
            "ENGAGE THE KILL SWITCH",
            "Enter engages it now: the gate denies EVERY autonomous action, on every host using this store, "
            "until someone releases it. Esc cancels.", confirm="Engage (Enter)",
            ask=Ask(reason_label="Reason (optional):", reason_optional=True,
                    reason_default=f"engaged from the console by {actor}"), id=KILL_SWITCH_MODAL), engage)

    # --- c, /, ? ------------------------------------------------------------------------------

    def action_cycle(self) -> None:
        cycle = self.gov.cycle
        actor = self.operator

        def said(report: dict[str, Any]) -> str:
            p = report.get("proposal")
            tail = (f"; proposal {p['proposalId']} drafted ({p['expansion']['currentPhase']} → "
                    f"{p['expansion']['targetPhase']}): 4 to review" if p else
                    f"; no proposal: {report.get('proposalNote') or 'not ready'}")
            return f"report {report['id']}: recommendation {report['recommendation']}{tail}"

        self.notify("running the governance cycle…", title="Cycle")
        self.perform(lambda: cycle.run(actor), said, title="Cycle complete")

    def action_filter(self) -> None:
        """`/`: the screen's filter line takes the focus; each keystroke narrows the list (GovScreen)."""
        screen = self.gov_screen
        if screen is None or screen is not self.screen:
            return  # a dialog is open
        if not screen.FILTER_WHAT:
            self.notify("nothing to filter on this screen", severity="warning")
            return
        screen.open_filter()

    def action_help(self) -> None:
        self.push_screen(HelpModal(self.gov_screen))

    # --- Enter: a breaker event's drill-down (screens/drilldown.py) ------------------------------

    DRILL_TABLES = ("events", "unresolved")  # screen 2's list, the dashboard's unresolved events

    def action_drilldown(self) -> None:
        screen = self.gov_screen
        if screen is None or screen is not self.screen or screen.SCREEN_NAME not in ("dashboard", "events"):
            return  # a dialog is open, or a screen without breaker events: Enter is not ours there
        event = screen.selected_event()
        if event is None:
            self.notify("select a breaker event first (2 lists them all)", title="Nothing selected",
                        severity="warning")
            return
        from screens.drilldown import DrilldownScreen  # deferred: loaded after launch (screens/app.py _lazy_screen)
        self.push_screen(DrilldownScreen(event["id"]))

    def on_data_table_row_selected(self, message) -> None:
        if message.data_table.id in self.DRILL_TABLES:
            self.action_drilldown()
