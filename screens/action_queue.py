"""Actions (key 8): the governed actions. Action requests waiting for a human (`a` approves, `x` rejects
the selected one), grants in flight, recent outcomes; the detail shows the selected row whole — why
it needs approval, who may decide, the grant, and the action report `govcon run` attached to it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, VerticalScroll
from textual.widgets import DataTable, Static

from engine.domain import ACTION_ROLES
from screens.action_view import (
    ActionsView,
    ago,
    approval_refusal,
    approvers,
    drain_line,
    expires_in,
    finished_at,
    four_eyes_refusal,
    load_actions,
    reliability_text,
    role_refusal,
    row_id,
    scope,
)
from screens.base import GovScreen
from screens.fmt import matches, safe, short_time
from screens.modals import Ask, ConfirmModal
from screens.widgets import DetailPane, Table

OUTCOME_STYLE = {"succeeded": "green", "failed": "bold red", "rolled_back": "yellow", "expired": "yellow",
                 "rejected": "red", "approved": "green", "pending": "bold yellow", "granted": "cyan",
                 "released": "dim"}
WHY_WIDTH = (12, 40)     # the "why" column's width, from narrow to wide
TAIL_LINES = 3
SECTIONS = ("aq-pending", "aq-flight", "aq-done", "aq-agents")


def clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def confidence(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _step_line(step: dict[str, Any]) -> tuple[str, str, str, str]:
    name = str(step.get("name") or step.get("step") or "?")
    code = step.get("exitCode")
    ms = step.get("durationMs")
    took = "–" if not isinstance(ms, (int, float)) else (f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s")
    command = step.get("command") or ""
    if isinstance(command, (list, tuple)):
        command = " ".join(map(str, command))
    return name, "–" if code is None else str(code), took, str(command)


def report_text(report: dict[str, Any] | None) -> Text:
    """The action report of `govcon run`: its outcome, then each step with exit code, duration, command
    and the last lines of its (redacted) output."""
    t = Text()
    if not report:
        return t
    code = report.get("exitCode")
    t.append("\nAction report", "bold")
    t.append(f"  {report.get('outcome', '?')}" + (f" (exit {code})" if code is not None else "") + "\n",
             OUTCOME_STYLE.get(str(report.get("outcome")), ""))
    if report.get("dryRun"):
        t.append("  dry run: nothing was executed\n", "dim")
    for step in report.get("steps") or ():
        name, exit_code, took, command = _step_line(step)
        ok = exit_code == "0"
        t.append(f"  {name:<9}", "bold")
        t.append(f" exit {exit_code:>3}", "green" if ok else "bold red" if exit_code != "–" else "dim")
        t.append(f" {took:>8}  {command}\n")
        tail = step.get("outputTail")
        if tail:
            for line in str(tail).splitlines()[-TAIL_LINES:]:
                t.append(f"      │ {line}\n", "dim")
        if step.get("error"):
            t.append(f"      {step['error']}\n", "red")
    if report.get("error"):
        t.append(f"  {report['error']}\n", "red")
    return t


def request_lines(t: Text, r: dict[str, Any], view: ActionsView, *, operator: str, roles: frozenset[str],
                  status: dict[str, Any] | None) -> None:
    now = view.now
    t.append(f"asked by {r['requestedBy']} {ago(now, r['requestedAt'])} ({short_time(r['requestedAt'])})")
    if r["status"] == "pending":
        t.append(f" · expires {expires_in(now, r['expiresAt'])} ({short_time(r['expiresAt'])})")
    t.append(f" · notification {r.get('notificationLevel') or 'info'}\n", "dim")
    t.append("Why it needs approval\n", "bold")
    t.append(f"  {r['reason'] or '–'}\n")
    t.append("Who may decide\n", "bold")
    t.append(f"  {', '.join(approvers(r))}\n")
    if r["status"] == "pending":
        no_role = role_refusal(r, operator, roles)
        blocked = approval_refusal(status)
        four_eyes = four_eyes_refusal(r, operator, view.four_eyes_relaxed)
        if no_role:
            t.append(f"  you ({operator}) hold none of them: govcon roles grant {operator} {approvers(r)[0]}\n",
                     "bold red")
        elif blocked:
            t.append(f"  approving is refused now: {blocked}; x still rejects\n", "bold red")
        elif four_eyes:
            t.append("  you asked for it: another approver must approve (four eyes); x rejects\n", "yellow")
        else:
            held = ", ".join(sorted(set(approvers(r)) & roles))
            t.append(f"  you hold {held}: a approves (a grant lets {r['agent']} act once, now), x rejects\n", "green")
    elif r["status"] in ("approved", "rejected"):
        t.append(f"  {r['status']} by {r['decidedBy']} at {short_time(r['decidedAt'])}"
                 + (f": {r['note']}" if r.get("note") else "") + "\n",
                 OUTCOME_STYLE.get(r["status"], ""))
    elif r["status"] == "expired":
        t.append(f"  nobody decided it before {short_time(r['expiresAt'])}: it counts as rejected\n", "yellow")


def action_detail(row: dict[str, Any] | None, view: ActionsView | None, *, operator: str,
                  roles: frozenset[str], status: dict[str, Any] | None,
                  shown: dict[str, Any] | None = None) -> Text:
    """The whole of one row. ``shown``: `ActionBook.show` of a grant (its request and report), once read."""
    if row is None or view is None:
        return Text("nothing selected: Tab moves between the lists, arrows within one", "dim")
    now = view.now
    t = Text()
    t.append(f"{scope(row)}  ", "bold")
    t.append(row["status"].upper(), "bold " + OUTCOME_STYLE.get(row["status"], ""))
    t.append(f"\n{row_id(row)} · agent {row['agent']} · confidence {confidence(row.get('confidence'))}"
             + (f" · class {row['actionClass']}" if row.get("actionClass") else "")
             + (f" · policy {row['policy']}" if row.get("policy") else "") + "\n", "dim")
    if row["kind"] == "request":
        request_lines(t, row, view, operator=operator, roles=roles, status=status)
        if row.get("grantId"):
            t.append(f"  grant {row['grantId']}\n")
        return t
    t.append(f"granted {short_time(row['grantedAt'])} ({ago(now, row['grantedAt'])})")
    if row["status"] == "granted":
        t.append(f" · expires {expires_in(now, row['expiresAt'])} without an outcome\n")
    elif row.get("outcomeAt"):
        t.append(f" · outcome {short_time(row['outcomeAt'])}\n")
    else:
        t.append(f" · no outcome reported by {short_time(row['expiresAt'])}: unknown\n", "yellow")
    t.append(f"approved by {row['approvedBy']}" if row.get("approvedBy") else
             "autonomous: allowed by the gate", "green" if row.get("approvedBy") else "")
    t.append(f" · requested by {row['requestedBy']}\n" if row.get("requestedBy") else "\n")
    request = (shown or {}).get("request")
    if request is not None:
        t.append(f"Request {request['requestId']}\n", "bold")
        t.append(f"  {request['reason'] or '–'}\n")
        if request.get("note"):
            t.append(f"  note: {request['note']}\n")
    grant = (shown or {}).get("grant") or {}
    if shown is None:
        t.append("\nreading the action report…", "dim")
    elif grant.get("report"):
        t.append_text(report_text(grant["report"]))
    else:
        t.append("\nno action report (the agent did not use govcon run)" if row["status"] != "granted" else
                 "\nin flight: the outcome arrives as a command event with id " + row["grantId"], "dim")
    return t


class ActionQueueScreen(GovScreen):
    SCREEN_NAME = "actions"
    SCREEN_TITLE = "8 Actions"
    FILTER_WHAT = "actions (type, service, agent, status, who)"
    BINDINGS = [Binding("m", "set_mode", "Mode", id="actions.mode",
                        tooltip="Change the degradation mode (normal, minimal, read_only): confirmation and "
                                "reason first; the kill switch's roles")]
    # lists above the detail at every width (the three tables need the whole width for their columns);
    # CSS, not DEFAULT_CSS: it must win over app.tcss's #split rules, and every selector names this screen
    CSS = """
    ActionQueueScreen #split { layout: vertical; }
    ActionQueueScreen #aq-lists { width: 100%; height: auto; max-height: 60%; border: round $secondary;
                                  padding: 0 1; border-title-style: bold; }
    ActionQueueScreen #aq-lists:focus-within { border: round $accent; }
    ActionQueueScreen #aq-lists Table { height: auto; max-height: 12; }
    ActionQueueScreen .aq-title { text-style: bold; color: $text-muted; }
    ActionQueueScreen #split #pane-action { width: 100%; height: 1fr; }
    ActionQueueScreen #pane-action:focus { border: round $accent; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.view: ActionsView | None = None
        self.section = SECTIONS[0]
        self._shown: dict[str, tuple[str | None, dict[str, Any]]] = {}   # grant id -> (its status, ActionBook.show)
        self._calibration: dict[str, list[dict[str, Any]]] = {}  # agent -> its calibration (read once per visit)

    def compose_body(self) -> ComposeResult:
        with Container(id="split"):
            with VerticalScroll(id="aq-lists"):
                yield Static("Pending requests", id="aq-pending-title", classes="aq-title")
                yield Table(("type", "service", "agent", "conf", "expires", "why", "asked by", "asked"),
                            id="aq-pending")
                yield Static("Grants in flight", id="aq-flight-title", classes="aq-title")
                yield Table(("type", "service", "agent", "granted", "expires", "approved by"), id="aq-flight")
                yield Static("Recent outcomes", id="aq-done-title", classes="aq-title")
                yield Table(("outcome", "type", "service", "agent", "when", "by"), id="aq-done")
                yield Static("Agents", id="aq-agents-title", classes="aq-title")
                yield Table(("agent", "lease", "until / lapsed", "last beat", "in flight"), id="aq-agents")
            yield DetailPane(Static("loading…", id="action-detail"), title="Detail", id="pane-action", classes="detail")

    def on_mount(self) -> None:
        self.query_one("#aq-lists").border_title = "Actions  (a approve · x reject · / filter)"
        self.query_one("#aq-pending", Table).focus()

    # --- data ---------------------------------------------------------------------------------

    def reload(self) -> None:
        gov = self.app.gov
        self.load("actions", lambda: load_actions(gov))

    def loaded(self, key: str, value: Any) -> None:
        if key == "actions":
            self.view = value
            self._redraw()
        elif key == "calibration" and value is not None:
            self._calibration[value[0]] = value[1]
            self._show_detail()
        elif key == "show" and value is not None:
            grant = value.get("grant") or {}
            if grant.get("grantId"):
                self._shown[grant["grantId"]] = (grant.get("status"), value)
            self._show_detail()

    def load_failed(self, key: str, error: str) -> None:
        if key == "actions" and self.view is None:
            self.query_one("#action-detail", Static).update(Text(f"the actions could not be read: {error}", "red"))

    def _visible(self, rows) -> list[dict[str, Any]]:
        if not self.filter_text:
            return list(rows)
        return [r for r in rows if matches(self.filter_text, r["commandType"], r.get("service"), r["agent"],
                                           r["status"], r.get("requestedBy"), r.get("approvedBy"),
                                           r.get("decidedBy"), row_id(r))]

    def _redraw(self) -> None:
        view = self.view
        if view is None:
            return
        now, why = view.now, self._why_width()
        pending, flight, done = self._visible(view.pending), self._visible(view.in_flight), self._visible(view.outcomes)
        self._set("aq-pending", f"Pending requests: {len(pending) or 'none'}", (
            (r["requestId"], (r["commandType"], r.get("service") or "–", r["agent"], confidence(r.get("confidence")),
                              Text(expires_in(now, r["expiresAt"]), "bold yellow"), clip(r["reason"], why),
                              r["requestedBy"], ago(now, r["requestedAt"])))
            for r in pending))
        self._set("aq-flight", f"Grants in flight: {len(flight) or 'none'}", (
            (g["grantId"], (g["commandType"], g.get("service") or "–", g["agent"], ago(now, g["grantedAt"]),
                            expires_in(now, g["expiresAt"]), g.get("approvedBy") or "autonomous"))
            for g in flight))
        self._set("aq-done", f"Recent outcomes: {len(done) or 'none'}", (
            (row_id(o), (Text(o["status"], OUTCOME_STYLE.get(o["status"], "")), o["commandType"],
                         o.get("service") or "–", o["agent"], ago(now, finished_at(o)),
                         o.get("approvedBy") or o.get("decidedBy")
                         or ("–" if o["kind"] == "request" else "autonomous")))
            for o in done))
        agents = [a for a in view.agents if not self.filter_text or matches(self.filter_text, a["name"])]
        live = sum(1 for a in agents if a["live"])
        title = f"Agents: {len(agents)} ({live} live, {len(agents) - live} lapsed)" if agents else "Agents: none"
        if view.drain is not None:
            title += "  ·  " + drain_line(view.drain)
        self._set("aq-agents", title, (
            (f"agent:{a['name']}", (a["name"], Text("live", "green") if a["live"] else Text("LAPSED", "bold red"),
                                    short_time(a["leaseExpiresAt"]), ago(now, a["lastBeatAt"]), str(a["inFlight"])))
            for a in agents))
        # no agents and no kill switch: nothing to say (a store whose agents never beat shows no empty list)
        self.query_one("#aq-agents-title", Static).display = bool(agents) or view.drain is not None
        if self.filter_text:
            self.query_one("#aq-pending-title", Static).update(
                f"Pending requests: {len(pending) or 'none'}  (filter {self.filter_text!r}: / changes it)")
        self._keep_focus_in_a_list()
        self._show_detail()

    def _why_width(self) -> int:
        """What is left of the pending list's width for the reason, so that at 80 columns the type,
        service, agent, confidence, expiry and the start of the reason are on screen (the detail has it all)."""
        width = self.app.size.width
        left = width - 64 - (20 if width >= 110 else 0)
        return max(WHY_WIDTH[0], min(WHY_WIDTH[1], left))

    def _set(self, section: str, title: str, rows) -> None:
        table = self.query_one(f"#{section}", Table)
        table.set_rows(rows)
        table.display = table.row_count > 0
        self.query_one(f"#{section}-title", Static).update(title)

    def _keep_focus_in_a_list(self) -> None:
        """When the list in use empties (its last request was decided), move to the next list with rows."""
        current = self.query_one(f"#{self.section}", Table)
        if current.display:
            return
        focused_here = self.focused is None or self.focused is current or isinstance(self.focused, Table)
        for section in SECTIONS:
            table = self.query_one(f"#{section}", Table)
            if table.display:
                self.section = section
                if focused_here:
                    table.focus()
                return

    # --- selection ----------------------------------------------------------------------------

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if isinstance(event.widget, Table) and event.widget.id in SECTIONS and event.widget.id != self.section:
            self.section = event.widget.id
            self._show_detail()

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == self.section:
            self._show_detail()

    def selected_action(self) -> dict[str, Any] | None:
        """The highlighted row of the list in use (a request or a grant)."""
        if self.view is None:
            return None
        table = self.query_one(f"#{self.section}", Table)
        key = table.selected_key if table.display else None
        return self.view.by_id.get(key) if key else None

    def selected_request(self) -> dict[str, Any] | None:
        """What `a` and `x` act on here: the selected row when it is an action request."""
        row = self.selected_action()
        return row if row is not None and row["kind"] == "request" else None

    def _agent_detail(self) -> Text:
        table = self.query_one("#aq-agents", Table)
        key = table.selected_key if table.display else None
        view = self.view
        agent = next((a for a in view.agents if f"agent:{a['name']}" == key), None) if view else None
        if agent is None or view is None:  # (no agent without a view: the second test is for mypy)
            return Text("nothing selected", "dim")
        t = Text()
        t.append(f"agent {agent['name']}  ", "bold")
        t.append("LEASE LIVE" if agent["live"] else "LEASE LAPSED", "bold green" if agent["live"] else "bold red")
        t.append(f"\nlease {'until' if agent['live'] else 'lapsed at'} {short_time(agent['leaseExpiresAt'])} · "
                 f"last beat {ago(view.now, agent['lastBeatAt'])} · ttl {agent['ttl']} s · {agent['beats']} beats "
                 f"since {short_time(agent['firstSeenAt'])}\n")
        t.append(f"token of {agent['lastOperator']} · {agent['inFlight']} grant(s) in flight\n")
        if not agent["live"]:
            t.append("its asks get needs_approval until it beats again\n", "yellow")
        if view.drain is not None:
            t.append(drain_line(view.drain) + "\n", "bold")
        name = agent["name"]
        if name not in self._calibration:
            book = self.app.gov.calibration
            self.load("calibration", lambda: (name, [c.to_json() for c in book.report(name, by_type=False)]))
        cal = self._calibration.get(name)
        t.append("\n")
        t.append_text(reliability_text(cal[0] if cal else ({"outcomes": 0, "bins": [], "brier": None, "ece": None}
                                                          if cal == [] else None)))
        return t

    def _show_detail(self) -> None:
        if self.section == "aq-agents":
            self.query_one("#action-detail", Static).update(safe(self._agent_detail()))
            return
        row = self.selected_action()
        shown = None
        if row is not None and row["kind"] == "grant":
            cached = self._shown.get(row["grantId"])
            if cached is not None and cached[0] == row["status"]:
                shown = cached[1]
            else:
                book, gid = self.app.gov.actions, row["grantId"]
                self.load("show", lambda: book.show(gid))
        live = self.app.live
        self.query_one("#action-detail", Static).update(safe(action_detail(
            row, self.view, operator=self.app.operator, roles=live.roles if live else frozenset(),
            status=live.status if live else None, shown=shown)))

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self._redraw()

    def action_set_mode(self) -> None:
        set_mode(self)


# --- m: the degradation mode (issue 14 pt 3) ----------------------------------------------------------

MODE_EFFECT = {
    "normal": "the gate judges every action as usual (phase, whitelist, policies)",
    "minimal": "only minimal_allowed classes act alone, the rest need approval",
    "read_only": "every autonomous action but reads is DENIED",
}
MODE_MODAL = "mode-modal"


def mode_refusal(operator: str, roles: frozenset[str], target: str | None = None) -> str | None:
    """Why ``operator`` may not change the mode (to ``target``, or at all), naming the roles; None if allowed.
    As the kill switch: degrading needs a role that may engage it, back to normal one that may release it."""
    actions = ["kill_switch.release" if target == "normal" else "kill_switch.engage"] if target else \
        ["kill_switch.engage", "kill_switch.release"]
    needed = sorted({r for a in actions for r in ACTION_ROLES[a]})
    if roles.intersection(needed):
        return None
    what = f"setting the mode to {target}" if target else "changing the mode"
    return (f"{what} needs one of the roles {', '.join(needed)} (as the kill switch); {operator} holds "
            f"{', '.join(sorted(roles)) or 'no role'}. An admin can grant it: govcon roles grant {operator} "
            f"{needed[0]}")


def set_mode(screen: GovScreen) -> None:
    """`m` on screen 8: refused before the dialog without the role (named); else a confirmation naming
    what each mode does, a reason, and the change through the engine (which checks the role again)."""
    app = screen.app
    live = app.live
    roles = live.roles if live is not None else frozenset()
    refused = mode_refusal(app.operator, roles)
    if refused:
        app.notify(refused, title="Not allowed", severity="error", markup=False)
        return
    current = ((live.status or {}).get("mode") if live is not None else None) or "normal"
    choices = tuple(m for m in ("minimal", "read_only", "normal") if m != current)
    # short enough that the dialog's buttons stay on an 80x24 screen
    body = "\n".join(f"{m}: {MODE_EFFECT[m]}" for m in choices)
    title = f"Change the mode (now {current}): all hosts, audited, on-call alerted"

    def done(result: dict[str, Any] | None) -> None:
        if result is None:
            return
        target, reason = result["choice"], result["reason"]
        refusal = mode_refusal(app.operator, roles, target)
        if refusal:
            app.notify(refusal, title="Not allowed", severity="error", markup=False)
            return
        actor, gov = app.operator, app.gov
        app.perform(lambda: gov.modes.set(actor, target, reason),
                    lambda r: f"{r['message']}: {MODE_EFFECT[target]}", title="Mode")

    app.push_screen(ConfirmModal(title, body, confirm="Set mode",
                                 ask=Ask(reason_label="Reason:", choices=choices,
                                         choice_label="Mode:"), id=MODE_MODAL), done)

