"""Rules (key 5): the circuit-breaker rules with their statistics and what each reads right now;
`e` edits the selected rule, `n` adds one (validated as you type, backtested before saving). `p` shows the
gate policies instead, as the store keeps them, and `p` again the rules; on the policies `e`, `n` and `d`
edit, add and delete one (screens/policy_editor.py). `s` lists the alert sinks and their routing, secrets
masked, with add, edit and delete (screens/sinks.py). Editing both needs admin or ops-lead."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import DataTable, Static

from engine.policies import limits_text
from screens import policy_editor
from screens.base import GovScreen
from screens.data import LiveData
from screens.fmt import STATE_STYLE, matches, pct, plural, safe, short_time
from screens.rule_editor import RuleEditModal
from screens.sinks import SinksModal
from screens.widgets import DetailPane, Pane, Table


def rule_detail(rule: dict[str, Any] | None, status) -> Text:
    if rule is None:
        return Text("no rule selected", "dim")
    s = rule["statistics"]
    t = Text()
    t.append(rule["name"] + "\n", "bold")
    t.append(f"trips when {rule['condition']} over {rule['window']} (judged on ≥{rule['minSamples']} commands)\n")
    t.append(f"action {rule['action']} · {rule['alertSeverity']} alert · "
             f"{'enabled' if rule['enabled'] else 'disabled'}\n")
    if rule["shadow"]:
        t.append("SHADOW: records what it would have done; acts on nothing (`govcon rules set NAME --enforce`)\n",
                 "yellow")
    if status is not None:
        t.append("now: ")
        t.append(status.state, STATE_STYLE.get(status.state, ""))
        t.append(f" · {status.observed}\n" if status.observed else "\n")
    t.append(f"\n{plural(s['trips'], 'trip')} · {s['resolved']} resolved · "
             f"{plural(s['falsePositives'], 'false positive')} "
             f"({pct(s['falsePositiveRate'])}) · {s['shadowTrips']} shadow · last {short_time(s['lastTrip'])}\n")
    t.append("\ne edits it (live validation, ctrl+b backtest, ctrl+s save)", "dim")
    return t


def policy_detail(policy: dict[str, Any] | None) -> Text:
    if policy is None:
        return Text("no policies in the store: the whitelist and the phase alone decide", "dim")
    t = Text()
    t.append(policy["name"] + "\n", "bold")
    t.append(f"covers {', '.join(policy['commandTypes'])}\n")
    t.append(f"{limits_text(policy)}\n")
    t.append(f"requests notify {policy['notificationLevel']} · approvers {', '.join(policy['approverRoles'])}\n")
    t.append(f"grants expire after {policy['grantTtl']} · requests after {policy['requestTtl']}\n")
    t.append(f"\nchanged {short_time(policy['updatedAt'])} by {policy['updatedBy']}\n")
    t.append("\ne edit · n new · d delete · s alert sinks (admin, ops-lead; audited)", "dim")
    return t


class RulesScreen(GovScreen):
    SCREEN_NAME = "rules"
    SCREEN_TITLE = "5 Rules"
    FILTER_WHAT = "rules"
    BINDINGS = [
        Binding("e", "edit", "Edit", id="rules.edit", tooltip="Edit the selected rule (validated as you type)"),
        Binding("n", "new", "New", id="rules.new",
                tooltip="Add a rule (validated, backtest before saving); on the policies (p): a policy"),
        Binding("p", "policies", "Policies", id="rules.policies",
                tooltip="Show the gate policies the store holds (p again: the rules)"),
        Binding("d", "delete", "Delete policy", id="rules.policy-delete", show=False,
                tooltip="On the policies (p): delete the selected policy, after a confirmation (admin, ops-lead)"),
        Binding("s", "sinks", "Alert sinks", id="rules.sinks", show=False,
                tooltip="The alert sinks and their routing (secrets masked): add, edit, delete (admin, ops-lead)"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rules: list[dict[str, Any]] = []
        self.policies: list[dict[str, Any]] = []
        self.showing_policies = False

    def compose_body(self) -> ComposeResult:
        with Container(id="split"):
            yield Pane(Table(("rule", "on", "condition", "window", "action", "trips", "FP"), id="rules"),
                       title="Circuit-breaker rules  (e edit · n new)", id="pane-rules", classes="list")
            yield DetailPane(Static("", id="rule-detail"), title="Rule", id="pane-rule", classes="detail")
            yield Pane(Table(("policy", "types", "limits"), id="policies"),
                       title="Gate policies (store)  e edit · n new · d delete · s sinks · p rules",
                       id="pane-policies", classes="list")
            yield DetailPane(Static("", id="policy-detail"), title="Policy", id="pane-policy", classes="detail")

    def on_mount(self) -> None:
        for pane in ("#pane-policies", "#pane-policy"):
            self.query_one(pane).display = False
        self.query_one("#rules", Table).focus()

    def reload(self) -> None:
        self.load("rules", lambda: self.app.gov.rules.list())
        if self.showing_policies:
            self.load("policies", lambda: self.app.gov.policy_book.list())

    def on_live(self, live: LiveData) -> None:
        self._show_detail()

    def loaded(self, key: str, value: Any) -> None:
        if key == "policies":
            self.policies = value
            self._redraw_policies()
            return
        self.rules = value
        self._redraw()

    def action_policies(self) -> None:
        """Switch the list between the rules and the store's gate policies."""
        self.showing_policies = not self.showing_policies
        for pane in ("#pane-policies", "#pane-policy"):
            self.query_one(pane).display = self.showing_policies
        for pane in ("#pane-rules", "#pane-rule"):
            self.query_one(pane).display = not self.showing_policies
        self.query_one("#policies" if self.showing_policies else "#rules", Table).focus()
        if self.showing_policies:
            self.load("policies", lambda: self.app.gov.policy_book.list())

    def _redraw_policies(self) -> None:
        visible = [p for p in self.policies if not self.filter_text or matches(
            self.filter_text, p["name"], *p["commandTypes"], p["notificationLevel"])]
        self.query_one("#policies", Table).set_rows(
            (p["name"], (p["name"], ",".join(p["commandTypes"]), limits_text(p))) for p in visible)
        self._show_policy()

    @on(DataTable.RowHighlighted, "#policies")
    def _show_policy(self) -> None:
        key = self.query_one("#policies", Table).selected_key
        policy = next((p for p in self.policies if p["name"] == key), None)
        if policy is None and self.policies:
            policy = self.policies[0]
        self.query_one("#policy-detail", Static).update(safe(policy_detail(policy)))

    def _redraw(self) -> None:
        visible = [r for r in self.rules if not self.filter_text or matches(
            self.filter_text, r["name"], r["condition"], r["action"], r["alertSeverity"])]
        self.query_one("#rules", Table).set_rows(
            (r["name"], (r["name"], ("shadow" if r["shadow"] else "✓") if r["enabled"] else "–", r["condition"],
                         r["window"], r["action"], str(r["statistics"]["trips"]),
                         pct(r["statistics"]["falsePositiveRate"], 0)))
            for r in visible)
        self._show_detail()

    def selected_rule(self) -> dict[str, Any] | None:
        key = self.query_one("#rules", Table).selected_key
        return next((r for r in self.rules if r["name"] == key), None)

    @on(DataTable.RowHighlighted, "#rules")
    def _show_detail(self) -> None:
        rule = self.selected_rule()
        live = self.app.live
        status = next((s for s in live.rules if rule and s.name == rule["name"]), None) if live else None
        self.query_one("#rule-detail", Static).update(safe(rule_detail(rule, status)))

    def selected_policy(self) -> dict[str, Any] | None:
        key = self.query_one("#policies", Table).selected_key
        return next((p for p in self.policies if p["name"] == key), None)

    @on(DataTable.RowSelected, "#policies")
    def _edit_policy(self) -> None:
        policy = self.selected_policy()
        if policy is None:
            self.notify("select a policy first (n adds one)", severity="warning")
            return
        policy_editor.edit_policy(self, policy, self.reload)

    def action_delete(self) -> None:
        policy = self.selected_policy() if self.showing_policies else None
        if policy is None:
            self.notify("d deletes a gate policy: p shows them, then select one", severity="warning")
            return
        policy_editor.delete_policy(self, policy)

    def action_sinks(self) -> None:
        self.app.push_screen(SinksModal())

    @on(DataTable.RowSelected, "#rules")
    def action_edit(self) -> None:
        if self.showing_policies:
            self._edit_policy()
            return
        rule = self.selected_rule()
        if rule is None:
            self.notify("select a rule first", severity="warning")
            return
        self.app.push_screen(RuleEditModal(rule), self._saved)

    def action_new(self) -> None:
        if self.showing_policies:
            policy_editor.edit_policy(self, None, self.reload)
            return
        self.app.push_screen(RuleEditModal(None), self._saved)

    def _saved(self, rule: dict[str, Any] | None) -> None:
        if rule is not None:
            self.notify(f"saved rule {rule['name']!r}", title="Rule saved")
            self.reload()

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self._redraw()
        if self.showing_policies:
            self._redraw_policies()
