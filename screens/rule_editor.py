"""The rule editor: validated as you type (engine.rules.validate_rule), backtested against stored history
before saving (ctrl+b), saved with ctrl+s through the rule book (audited, role-checked).

The half-open recovery fields of a rule (DESIGN.md "Recovery"): ``recovery`` (half_open or manual),
``cooldown`` (blank: none; else a duration after which a paused type is half-open by itself) and
``probes`` (succeeded probes that close a half-open type). An edit keeps what the rule has; refusals
(probes 0, a negative cooldown, a cooldown with recovery manual) are shown under the fields like any other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Select, Static

from engine.domain import BREAKER_ACTIONS, SEVERITIES
from engine.errors import GovconError
from engine.rules import RECOVERIES, RULE_FIELDS, validate_rule
from screens.errors import describe_error
from screens.fmt import plural
from screens.widgets import TickBox

if TYPE_CHECKING:
    from textual import getters

    from screens.app import GovconApp

BACKTEST_DAYS = 30


def backtest_text(doc: dict[str, Any]) -> Text:
    t = Text()
    t.append(f"Backtest over {BACKTEST_DAYS} days: ", "bold")
    t.append(plural(doc["trips"], "trip"), "bold red" if doc["trips"] else "bold green")
    t.append(f" ({doc['tripsWithIncidentNearby']} with an incident nearby, {doc['tripsWithoutIncident']} without) "
             f"in {plural(doc['windowsJudged'], 'window')}\n")
    for trip in doc["tripTimes"][:5]:
        t.append(f"  {trip['at']}" + (f" {trip['commandType']}" if trip["commandType"] else "")
                 + (f" · incidents {', '.join(trip['incidentsNearby'][:2])}" if trip["incidentsNearby"] else "")
                 + "\n", "dim")
    if doc["trips"] > 5:
        t.append(f"  … and {doc['trips'] - 5} more\n", "dim")
    return t


def _whole(text: str) -> Any:
    """A whole number typed in a field, or the text itself (the validation then names what is wrong)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


class RuleEditModal(ModalScreen[dict[str, Any] | None]):
    if TYPE_CHECKING:  # for mypy only: the console's screens run in GovconApp (Textual's typed `app`)
        app = getters.app(GovconApp)

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="rule.cancel", tooltip="Close without saving"),
        Binding("ctrl+b", "backtest", "Backtest", id="rule.backtest",
                tooltip=f"What this draft would have done over the last {BACKTEST_DAYS} days of history"),
        Binding("ctrl+s", "save", "Save", id="rule.save", tooltip="Save the rule (validated, audited)"),
    ]

    class Result(Message):
        def __init__(self, kind: str, value: Any, error: str | None) -> None:
            super().__init__()
            self.kind, self.value, self.error = kind, value, error

    def __init__(self, rule: dict[str, Any] | None) -> None:
        super().__init__()
        self.rule = rule
        self.valid: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        r = {"recovery": "half_open", "cooldown": None, "probes": 3, **(self.rule or {
            "name": "", "condition": "", "window": "5m", "action": "alert_only", "alertSeverity": "medium",
            "minSamples": 10, "enabled": True, "shadow": False})}
        with VerticalScroll(id="dialog", classes="editor"):
            yield Static(f"Edit rule: {r['name']}" if self.rule else "New rule", id="dialog-title")
            yield Static("ctrl+s save · ctrl+b backtest the draft · Esc cancel · validated as you type",
                         classes="field-label")
            if not self.rule:
                yield Static("Name", classes="field-label")
                yield Input(r["name"], placeholder="e.g. Slow Failures", id="name")
            yield Static("Condition (e.g. errorRate > 0.05, commandType.failures >= 3)", classes="field-label")
            yield Input(r["condition"], id="condition")
            with Horizontal(classes="row"):
                with Vertical():
                    yield Static("Window", classes="field-label")
                    yield Input(r["window"], placeholder="30s 5m 15m 1h 1d", id="window")
                with Vertical():
                    yield Static("Min samples", classes="field-label")
                    yield Input(str(r["minSamples"]), id="min-samples")
            with Horizontal(classes="row"):
                with Vertical():
                    yield Static("Action", classes="field-label")
                    yield Select([(a, a) for a in BREAKER_ACTIONS], value=r["action"], allow_blank=False,
                                 id="action")
                with Vertical():
                    yield Static("Severity", classes="field-label")
                    yield Select([(s, s) for s in SEVERITIES], value=r["alertSeverity"], allow_blank=False,
                                 id="severity")
            yield Static("Recovery of a paused type (pause_command_type rules)", classes="field-label")
            with Horizontal(classes="row"):
                with Vertical():
                    yield Static("Recovery", classes="field-label")
                    yield Select([(x, x) for x in RECOVERIES], value=r["recovery"] or "half_open",
                                 allow_blank=False, id="recovery")
                with Vertical():
                    yield Static("Cooldown", classes="field-label")
                    yield Input(r["cooldown"] or "", placeholder="none, or 30m 1h", id="cooldown")
                with Vertical():
                    yield Static("Probes", classes="field-label")
                    yield Input(str(r["probes"] if r["probes"] is not None else 3), id="probes")
            with Horizontal(classes="row"):
                yield TickBox("enabled", r["enabled"], id="enabled")
                yield TickBox("shadow: records what it would do", r["shadow"], id="shadow")
            yield Static("", id="validation")
            yield Static("", id="backtest")
            with Horizontal(id="dialog-buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary")
                yield Button("Backtest (ctrl+b)", id="backtest-button")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name" if not self.rule else "#condition", Input).focus()
        self.validate()

    def fields(self) -> dict[str, Any]:
        samples = _whole(self.query_one("#min-samples", Input).value)
        cooldown = self.query_one("#cooldown", Input).value.strip()
        name = self.rule["name"] if self.rule else self.query_one("#name", Input).value
        return {"name": name, "condition": self.query_one("#condition", Input).value,
                "window": self.query_one("#window", Input).value,
                "action": self.query_one("#action", Select).value,
                "alert_severity": self.query_one("#severity", Select).value,
                "min_samples": samples, "enabled": self.query_one("#enabled", Checkbox).value,
                "shadow": self.query_one("#shadow", Checkbox).value,
                "recovery": self.query_one("#recovery", Select).value, "cooldown": cooldown or None,
                "probes": _whole(self.query_one("#probes", Input).value)}

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def validate(self) -> None:
        out = self.query_one("#validation", Static)
        try:
            self.valid = validate_rule(self.fields())
        except GovconError as exc:
            self.valid = None
            out.update(Text(f"✗ {exc}", "red"))
            return
        v = self.valid
        recovery = ""
        if v["action"] == "pause_command_type":
            recovery = ("; comes back by hand only" if v["recovery"] == "manual" else
                        f"; half-open after resolution{' or ' + v['cooldown'] if v['cooldown'] else ''}, "
                        f"closed after {plural(v['probes'], 'succeeded probe')}")
        out.update(Text(f"✓ valid: trips when {v['condition']} over {v['window']} "
                        f"(judged on ≥{v['min_samples']} commands) → {v['action']}, {v['alert_severity']} alert"
                        + recovery, "green"))

    def action_backtest(self) -> None:
        if self.valid is None:
            self.notify("fix the rule first: the backtest needs a valid condition and window", severity="warning")
            return
        v, gov = self.valid, self.app.gov
        self.query_one("#backtest", Static).update(Text("backtesting…", "dim"))
        self._run("backtest", lambda: gov.backtester.run(v["condition"], v["window"], days=BACKTEST_DAYS,
                                                         min_samples=v["min_samples"]).to_json())

    def action_save(self) -> None:
        if self.valid is None:
            self.notify("the rule is not valid yet: see the message under the fields", severity="error")
            return
        v, gov, actor = self.valid, self.app.gov, self.app.operator
        changes = {k: v[k] for k in RULE_FIELDS}
        if self.rule:
            self._run("save", lambda: gov.rules.set(actor, self.rule["name"], changes))
        else:
            self._run("save", lambda: gov.rules.add(actor, {"name": v["name"], **changes}))

    def _run(self, kind: str, fn) -> None:
        def work() -> None:
            try:
                value, error = fn(), None
            except Exception as exc:
                value, error = None, describe_error(exc)
            self.post_message(self.Result(kind, value, error))
        self.run_worker(work, thread=True, group=f"rule-{kind}", exit_on_error=False)

    @on(Result)
    def _result(self, message: Result) -> None:
        if message.error:
            if message.kind == "backtest":
                self.query_one("#backtest", Static).update(Text(message.error, "red"))
            self.notify(message.error, title="Rule not saved" if message.kind == "save" else "Backtest failed",
                        severity="error")
        elif message.kind == "backtest":
            self.query_one("#backtest", Static).update(backtest_text(message.value))
        else:
            self.dismiss(message.value)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#backtest-button")
    def _backtest_pressed(self) -> None:
        self.action_backtest()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
