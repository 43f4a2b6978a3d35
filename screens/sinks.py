"""Alert sinks and their routing, as the store keeps them (screen 5, `s`): listed with their secrets masked,
added (`n`), edited (`e`/Enter) and deleted (`d`, after a confirmation) by admin and ops-lead — the role is
asked before any dialog opens. Every change goes through the sink book (engine/store_config.py
``SinkBook``, the same path as `govcon alerts sinks set|delete`): one transaction, one audit entry with
before and after, both masked.

A sink's URL and PagerDuty routing key are secrets: the list and the editor show only the masked URL
(scheme and host), "(set)" and a fingerprint; the editor's secret fields start empty (empty keeps the
stored secret) and mask what is typed, so a secret never appears on the screen."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Input, Select, Static

from engine.alerts import SINK_TYPES
from engine.errors import GovconError, InvalidInput
from screens.errors import describe_error, error_title
from screens.fmt import safe, short_time
from screens.modals import Ask, ConfirmModal
from screens.policy_editor import StoreEditModal, with_role
from screens.widgets import Table, TickBox

if TYPE_CHECKING:
    from textual import getters

    from screens.app import GovconApp

EDIT_ACTION = "sinks.edit"  # engine/domain.py: editing alert sinks and their routing (admin, ops-lead)
#: the config file's keys -> the editor's labels, which name a refused value
FIELD_LABELS = {"type": "Kind", "url": "URL", "routing_key": "Routing key", "severities": "Severities",
                "timeout": "Timeout", "reports": "Reports", "from": "From", "to": "To", "username": "Username",
                "password_env": "Password variable", "ca_file": "CA file"}
SECRETS = ("url", "routing_key")
MAIL = ("from", "to", "username", "password_env", "ca_file")


def refusal_text(message: str) -> str:
    """An engine message about a sink's key (``url must be …``) in the editor's words."""
    for key, label in FIELD_LABELS.items():
        message = re.sub(rf"(?<![\w-]){re.escape(key)}(?![\w-])(?= (must|is|has|and|go))", label, message)
    return message


def sink_detail(sink: dict[str, Any] | None) -> Text:
    if sink is None:
        return Text("no alert sinks: alerts are logged only (n adds one)", "dim")
    t = Text()
    t.append(f"{sink['name']} ({sink['kind']})\n", "bold")
    if sink.get("invalid"):
        t.append(f"INVALID, never used: {sink['invalid']}\n", "red")
    t.append(f"URL {sink.get('url') or '-'} (masked)")
    if sink.get("routingKey"):
        t.append(" · routing key set (masked)")
    t.append(f"\nsecret fingerprint {sink.get('secretFingerprint', '-')}\n")
    t.append(f"takes {', '.join(sink.get('severities') or []) or '-'} alerts · reports "
             f"{'yes' if sink.get('reports') else 'no'} · timeout {sink.get('timeout')} s\n")
    if sink["kind"] == "smtp":
        t.append(f"from {sink.get('from')} to {', '.join(sink.get('to') or [])}"
                 + (f" · login {sink['username']} (password from ${sink['passwordEnv']})" if sink.get("username")
                    else "") + "\n")
    t.append(f"\nchanged {short_time(sink.get('updatedAt'))} by {sink.get('updatedBy')}\n")
    t.append("\nn add · e edit · d delete · Esc back (admin, ops-lead; audited)", "dim")
    return t


def sink_changes(values: dict[str, Any], *, new: bool) -> dict[str, Any]:
    """The editor's values as the config file spells them (None clears a setting). A secret field left
    empty is not sent: the sink keeps its stored secret."""
    out: dict[str, Any] = {"type": values["type"]}
    for key in SECRETS:
        text = str(values.get(key) or "").strip()
        if text:
            out[key] = text
    severities = [s.strip() for s in str(values.get("severities") or "").split(",") if s.strip()]
    out["severities"] = severities or None
    timeout = str(values.get("timeout") or "").strip()
    try:
        out["timeout"] = float(timeout) if timeout else None
    except ValueError:
        raise InvalidInput(f"Timeout: {timeout!r} is not a number of seconds (empty: 5)") from None
    out["reports"] = bool(values.get("reports"))
    if values["type"] == "smtp":
        for key in MAIL:
            text = str(values.get(key) or "").strip()
            out[key] = ([a.strip() for a in text.split(",") if a.strip()] or None) if key == "to" else (text or None)
    else:
        out.update(dict.fromkeys(MAIL))
    return out


class SinkEditModal(StoreEditModal):
    """Dismisses with the sink book's answer on save, None on cancel."""

    ERROR_ID = "sink-error"
    WHAT = "Sink"

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="sink.cancel", tooltip="Close without saving"),
        Binding("ctrl+s", "save", "Save", id="sink.save", tooltip="Save the sink (audited; secrets masked)"),
    ]

    def __init__(self, sink: dict[str, Any] | None) -> None:
        super().__init__()
        self.sink = sink

    def compose(self) -> ComposeResult:
        s = self.sink or {"kind": "webhook", "severities": [], "timeout": 5.0, "reports": False, "to": []}

        def field(key: str, value: Any = "", placeholder: str = "", password: bool = False) -> ComposeResult:
            yield Static(FIELD_LABELS[key], classes="field-label")
            yield Input("" if value is None else str(value), placeholder=placeholder, password=password,
                        id="sink-" + key.replace("_", "-"))

        with VerticalScroll(id="dialog", classes="editor"):
            yield Static(f"Edit alert sink: {escape(self.sink['name'])}" if self.sink else "New alert sink",
                         id="dialog-title")
            yield Static("ctrl+s save · Esc cancel · the URL and routing key are never shown back",
                         classes="field-label")
            yield Static("", id="sink-error")
            if not self.sink:
                yield Static("Name", classes="field-label")
                yield Input("", placeholder="e.g. ops-webhook", id="sink-name")
            yield Static(FIELD_LABELS["type"], classes="field-label")
            yield Select([(k, k) for k in SINK_TYPES], value=s["kind"], allow_blank=False, id="sink-type")
            if self.sink:
                stored = f"stored: URL {s.get('url') or '-'}" + (" · routing key set" if s.get("routingKey") else "")
                yield Static(f"{escape(stored)} (masked; an empty field keeps the stored secret)",
                             classes="field-label", id="sink-stored")
            with Horizontal(classes="row"):
                with Vertical():
                    yield from field("url", placeholder="empty: keep it" if self.sink else "https://hooks.example.com/…",
                                     password=True)
                with Vertical():
                    yield from field("routing_key", placeholder=("empty: keep it" if s.get("routingKey")
                                                                 else "pagerduty only"), password=True)
            with Horizontal(classes="row"):
                with Vertical():
                    yield from field("severities", ", ".join(s.get("severities") or []),
                                     "critical, high, medium, low (empty: by kind)")
                with Vertical():
                    yield from field("timeout", s.get("timeout"), "5 (seconds)")
            yield TickBox("Reports: each cycle's report goes to it", bool(s.get("reports")), id="sink-reports")
            yield Static("smtp only", classes="field-label")
            with Horizontal(classes="row"):
                with Vertical():
                    yield from field("from", s.get("from"), "govcon@example.com")
                with Vertical():
                    yield from field("to", ", ".join(s.get("to") or []), "ops@example.com")
            with Horizontal(classes="row"):
                with Vertical():
                    yield from field("username", s.get("username"))
                with Vertical():
                    yield from field("password_env", s.get("passwordEnv"), "GOVCON_SMTP_PASSWORD")
            yield from field("ca_file", s.get("caFile"), "/etc/ssl/private-ca.pem")
            yield Static("Reason (audit log, optional)", classes="field-label")
            yield Input("", placeholder="why", id="sink-reason")
            with Horizontal(id="dialog-buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        (self.query_one("#sink-name", Input) if not self.sink else self.query_one("#sink-type", Select)).focus()

    @on(Select.Changed, "#sink-type")
    def _kind(self, event: Select.Changed) -> None:
        if self.sink is None:  # a new smtp sink sends reports by default, as the config file's do
            self.query_one("#sink-reports", Checkbox).value = event.value == "smtp"

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.query_one("#sink-type", Select).value,
                               "reports": self.query_one("#sink-reports", Checkbox).value}
        for key in (*SECRETS, "severities", "timeout", *MAIL):
            out[key] = self.query_one("#sink-" + key.replace("_", "-"), Input).value
        return out

    def action_save(self) -> None:
        name = self.sink["name"] if self.sink else self.query_one("#sink-name", Input).value.strip()
        try:
            if not name:
                raise InvalidInput("Name: a sink needs a name")
            changes = sink_changes(self.values(), new=self.sink is None)
        except GovconError as exc:
            self._refused(str(exc))
            return
        self._save(name, changes, self.query_one("#sink-reason", Input).value.strip())

    @work(thread=True, exit_on_error=False, group="sink-save")
    def _save(self, name: str, changes: dict[str, Any], reason: str) -> None:
        app = self.app
        try:
            self.post_message(self.Saved(app.gov.sink_book.set(app.operator, name, changes, reason=reason), None, ""))
        except Exception as exc:
            self.post_message(self.Saved(None, refusal_text(describe_error(exc)), error_title(exc)))



class SinksModal(ModalScreen[None]):
    """The store's alert sinks (secrets masked), with add, edit and delete."""

    if TYPE_CHECKING:  # for mypy only: the console's screens run in GovconApp (Textual's typed `app`)
        app = getters.app(GovconApp)

    DEFAULT_CSS = """
    SinksModal #dialog.sinks { width: 110; max-width: 98%; height: auto; max-height: 95%; }
    SinksModal #sinks { max-height: 8; }
    SinksModal #sink-detail { height: auto; }
    """
    BINDINGS = [
        Binding("escape", "close", "Back", id="sinks.close", tooltip="Back to the rules screen"),
        Binding("n", "new", "New sink", id="sinks.new", tooltip="Add an alert sink (admin, ops-lead; audited)"),
        Binding("e", "edit", "Edit", id="sinks.edit",
                tooltip="Edit the selected sink (its secrets are never shown; empty keeps them)"),
        Binding("d", "delete", "Delete", id="sinks.delete", tooltip="Delete the selected sink (after a confirmation)"),
    ]

    class Listed(Message):
        def __init__(self, sinks: list[dict[str, Any]] | None, error: str | None) -> None:
            super().__init__()
            self.sinks, self.error = sinks, error

    def __init__(self) -> None:
        super().__init__()
        self.sinks: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="sinks"):
            yield Static("Alert sinks and routing  n add · e edit · d delete · Esc back", id="dialog-title")
            yield Table(("sink", "kind", "URL (masked)", "severities", "reports"), id="sinks")
            yield Static("", id="sink-detail")

    def on_mount(self) -> None:
        self.query_one("#sinks", Table).focus()
        self.reload()

    @work(thread=True, exit_on_error=False, group="sinks-list")
    def reload(self) -> None:
        try:
            self.post_message(self.Listed(self.app.gov.sink_book.list(), None))
        except Exception as exc:
            self.post_message(self.Listed(None, describe_error(exc)))

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        if message.error is not None:
            self.query_one("#sink-detail", Static).update(Text(f"cannot read the sinks: {message.error}", "red"))
            return
        self.sinks = message.sinks or []
        self.query_one("#sinks", Table).set_rows(
            (s["name"], (s["name"], s["kind"], "INVALID" if s.get("invalid") else (s.get("url") or "-"),
                         ",".join(s.get("severities") or []) or "-", "yes" if s.get("reports") else "no"))
            for s in self.sinks)
        self._show()

    def selected(self) -> dict[str, Any] | None:
        key = self.query_one("#sinks", Table).selected_key
        return next((s for s in self.sinks if s["name"] == key), None)

    @on(DataTable.RowHighlighted, "#sinks")
    def _show(self) -> None:
        sink = self.selected() or (self.sinks[0] if self.sinks else None)
        self.query_one("#sink-detail", Static).update(safe(sink_detail(sink)))

    def _saved(self, result: dict[str, Any] | None) -> None:
        if result is None:
            return
        name = result["sink"]["name"]
        verb = "created" if result["created"] else "saved" if result["changed"] else "unchanged:"
        self.app.notify(f"{verb} alert sink {name!r}: alerts route by it now", title="Sink saved", markup=False)
        self.reload()

    def action_new(self) -> None:
        with_role(self, EDIT_ACTION, lambda: self.app.push_screen(SinkEditModal(None), self._saved))

    @on(DataTable.RowSelected, "#sinks")
    def action_edit(self) -> None:
        sink = self.selected()
        if sink is None:
            self.app.notify("select a sink first (n adds one)", severity="warning")
            return
        with_role(self, EDIT_ACTION, lambda: self.app.push_screen(SinkEditModal(sink), self._saved))

    def action_delete(self) -> None:
        sink = self.selected()
        if sink is None:
            self.app.notify("select a sink first", severity="warning")
            return
        app, name = self.app, sink["name"]

        def confirmed(answer: dict[str, Any] | None) -> None:
            if answer is not None:
                self._delete(name, answer["reason"])

        body = (f"Delete the alert sink {escape(name)!r} ({sink['kind']}, {sink.get('url') or '-'})? Alerts of "
                f"{', '.join(sink.get('severities') or []) or 'any'} severity no longer go to it. Recorded in the "
                "audit log (secrets masked).")
        with_role(self, EDIT_ACTION, lambda: app.push_screen(
            ConfirmModal(f"Delete alert sink {escape(name)}", body, confirm="Delete (ctrl+s)",
                         ask=Ask(reason_label="Reason (audit log):", reason_optional=True,
                                 reason_default="deleted in the console")), confirmed))

    class Deleted(Message):
        def __init__(self, sink_name: str, error: str | None, title: str) -> None:
            super().__init__()
            self.sink_name, self.error, self.title = sink_name, error, title

    @work(thread=True, exit_on_error=False, group="sink-delete")
    def _delete(self, name: str, reason: str) -> None:
        app = self.app
        try:
            app.gov.sink_book.delete(app.operator, name, reason=reason)
            self.post_message(self.Deleted(name, None, ""))
        except Exception as exc:
            self.post_message(self.Deleted(name, describe_error(exc), error_title(exc)))

    @on(Deleted)
    def _deleted(self, message: Deleted) -> None:
        if message.error is not None:
            self.app.notify(message.error, title=f"Sink not deleted: {message.title}", severity="error",
                            markup=False)
        else:
            self.app.notify(f"deleted alert sink {message.sink_name!r}: it receives no more alerts",
                            title="Sink deleted", markup=False)
        self.reload()

    def action_close(self) -> None:
        self.dismiss(None)
