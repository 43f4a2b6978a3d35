"""The gate policy editor (screen 5, `p` then `n`/`e`/`d`): create a policy, edit each of its settings,
delete it after a confirmation. Only admin and ops-lead edit policies (DESIGN.md): the role is asked of the
store — or of the service, in client mode — before any dialog opens, and a refusal names the roles.

The editor validates as you type with the engine's own reader of policies (engine/policies.py
``load_policies``), and a value it refuses is named by its field's label. Saving goes through the policy
book (engine/store_config.py ``PolicyBook.set``, the same path as `govcon policies set`): one transaction,
one audit entry with the spec before and after, in a worker thread. The editor shows every setting, so it
saves the whole policy (``replace``): a field left empty is the setting's default."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Select, Static

from engine.errors import GovconError, InvalidInput
from engine.policies import NOTIFICATION_LEVELS, limits_text, load_policies
from engine.store_config import check_name, relabel
from screens.errors import describe_error, error_title
from screens.modals import Ask, ConfirmModal
from screens.widgets import TickBox

if TYPE_CHECKING:
    from textual import getters

    from screens.app import GovconApp

#: the config file's keys (what the store keeps) -> the editor's labels, which name a refused value
FIELD_LABELS: dict[str, str] = {
    "command_types": "Command types", "max_per_day": "Max per day", "max_per_week": "Max per week",
    "min_interval": "Min interval", "max_concurrent": "Max concurrent", "confidence_threshold": "Confidence",
    "maintenance_window": "Maintenance window", "maintenance_window_required": "Only inside the window",
    "notification_level": "Notification level", "approver_roles": "Approver roles", "grant_ttl": "Grant TTL",
    "request_ttl": "Request TTL", "stable_for": "Stable for", "enabled": "Enabled",
    "per_service": "Per service", "requires_approval": "Requires approval",
    "rollback_mandatory": "Rollback mandatory", "calibrated": "Calibrated",
}
#: text fields: (key, placeholder, how the text is read)
INTS = ("max_per_day", "max_per_week", "max_concurrent")
TEXTS = ("min_interval", "maintenance_window", "grant_ttl", "request_ttl", "stable_for")
LISTS = ("command_types", "approver_roles")
FLAGS = ("enabled", "maintenance_window_required", "requires_approval", "rollback_mandatory", "calibrated",
         "per_service")
PLACEHOLDERS = {"command_types": "restart_service, clear_cache", "max_per_day": "no limit",
                "max_per_week": "no limit", "min_interval": "none (30s 5m 1h)", "max_concurrent": "no limit",
                "confidence_threshold": "none (0..1)", "maintenance_window": "none (HH:MM-HH:MM UTC)",
                "approver_roles": "on-call, incident-commander, ops-lead", "grant_ttl": "15m (default)",
                "request_ttl": "30m (default)", "stable_for": "none (e.g. 30m)"}
EDIT_ACTION = "rules.edit"  # engine/domain.py: editing rules, breaker mode and policies (admin, ops-lead)


def field_id(key: str) -> str:
    return "pol-" + key.replace("_", "-")


def refusal_text(message: str, name: str) -> str:
    """An engine message about ``[policies.NAME].key`` in the editor's words (its field labels)."""
    return relabel(message, name or "?", FIELD_LABELS)


def read_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The editor's raw values (text fields as typed, flags, the level) as the config file spells them; an
    empty field is None (the setting's default). A number that is no number is refused naming its label."""
    out: dict[str, Any] = {}
    for key in INTS:
        text = str(values.get(key) or "").strip()
        try:
            out[key] = int(text) if text else None
        except ValueError:
            raise InvalidInput(f"{FIELD_LABELS[key]}: {text!r} is not a whole number (empty: no limit)") from None
    text = str(values.get("confidence_threshold") or "").strip()
    try:
        out["confidence_threshold"] = float(text) if text else None
    except ValueError:
        raise InvalidInput(f"Confidence: {text!r} is not a number from 0 to 1 (empty: none)") from None
    for key in TEXTS:
        out[key] = str(values.get(key) or "").strip() or None
    for key in LISTS:
        items = [t.strip() for t in str(values.get(key) or "").split(",") if t.strip()]
        out[key] = items or None
    for key in FLAGS:
        out[key] = bool(values.get(key))
    out["notification_level"] = values.get("notification_level") or "info"
    return out


def validate(name: str, changes: dict[str, Any], *, new: bool) -> dict[str, Any]:
    """The policy as the engine reads it (InvalidInput in the editor's words when it is refused)."""
    if new:
        try:
            check_name(name, "policy")
        except InvalidInput as exc:
            raise InvalidInput(f"Name: {exc}") from None
    if not changes.get("command_types"):
        raise InvalidInput("Command types: name at least one command type the policy covers")
    spec = {k: v for k, v in changes.items() if v is not None}
    try:
        return load_policies({name: spec})[0].to_json()
    except InvalidInput as exc:
        raise InvalidInput(refusal_text(str(exc), name)) from None


def _shown(spec: dict[str, Any], key: str) -> str:
    value = spec.get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


class StoreEditModal(ModalScreen[dict[str, Any] | None]):
    """What the policy and sink editors share: a save done in a worker answers by ``Saved``; a refusal is
    shown at the top of the dialog (``#{ERROR_ID}``) and as a toast, nothing written; Esc or Cancel closes."""

    if TYPE_CHECKING:  # for mypy only: the console's screens run in GovconApp (Textual's typed `app`)
        app = getters.app(GovconApp)

    ERROR_ID = ""
    WHAT = ""

    class Saved(Message):
        def __init__(self, value: Any, error: str | None, title: str) -> None:
            super().__init__()
            self.value, self.error, self.title = value, error, title

    def action_save(self) -> None:
        raise NotImplementedError

    @on(Saved)
    def _saved(self, message: Saved) -> None:
        if message.error is not None:
            self._refused(message.error, message.title)
        else:
            self.dismiss(message.value)

    def _refused(self, text: str, title: str = "Invalid input") -> None:
        """Shown in the editor, where the field is (and as a toast): nothing was written."""
        self.query_one(f"#{self.ERROR_ID}", Static).update(Text(f"✗ not saved: {text}", "bold red"))
        self.query_one("#dialog", VerticalScroll).scroll_home(animate=False)
        self.app.notify(text, title=f"{self.WHAT} not saved: {title}", severity="error", markup=False)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class PolicyEditModal(StoreEditModal):
    """Dismisses with the policy book's answer ({changed, created, policy}) on save, None on cancel."""

    ERROR_ID = "policy-error"
    WHAT = "Policy"

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="policy.cancel", tooltip="Close without saving"),
        Binding("ctrl+s", "save", "Save", id="policy.save",
                tooltip="Save the policy (validated, audited with before and after)"),
    ]

    def __init__(self, policy: dict[str, Any] | None) -> None:
        super().__init__()
        self.policy = policy
        self.valid: dict[str, Any] | None = None

    @property
    def policy_name(self) -> str:
        return self.policy["name"] if self.policy else self.query_one("#pol-name", Input).value.strip()

    def compose(self) -> ComposeResult:
        spec: dict[str, Any] = dict((self.policy or {}).get("spec") or {})
        if self.policy and not spec:
            spec = {"command_types": self.policy.get("commandTypes") or []}

        def text(key: str) -> ComposeResult:
            yield Static(FIELD_LABELS[key], classes="field-label")
            yield Input(_shown(spec, key), placeholder=PLACEHOLDERS.get(key, ""), id=field_id(key))

        def pair(a: str, b: str) -> ComposeResult:
            with Horizontal(classes="row"):
                with Vertical():
                    yield from text(a)
                with Vertical():
                    yield from text(b)

        with VerticalScroll(id="dialog", classes="editor"):
            yield Static(f"Edit policy: {self.policy['name']}" if self.policy else "New gate policy",
                         id="dialog-title", markup=False)
            yield Static("ctrl+s save · Esc cancel · empty = default/no limit · admin, ops-lead · audited",
                         classes="field-label")
            yield Static("", id="policy-error")
            if not self.policy:
                yield Static("Name", classes="field-label")
                yield Input("", placeholder="e.g. service_restart", id="pol-name")
            yield from text("command_types")
            yield from pair("max_per_day", "max_per_week")
            yield from pair("min_interval", "max_concurrent")
            yield from pair("confidence_threshold", "maintenance_window")
            yield from pair("grant_ttl", "request_ttl")
            yield from pair("stable_for", "approver_roles")
            yield Static(FIELD_LABELS["notification_level"] + " (action requests: info logs, alert chats, "
                         "approval_required pages)", classes="field-label")
            yield Select([(level, level) for level in NOTIFICATION_LEVELS],
                         value=spec.get("notification_level", "info"), allow_blank=False,
                         id=field_id("notification_level"))
            with Horizontal(classes="row"):
                yield TickBox(FIELD_LABELS["enabled"], spec.get("enabled", True), id=field_id("enabled"))
                yield TickBox(FIELD_LABELS["maintenance_window_required"],
                              bool(spec.get("maintenance_window_required")),
                              id=field_id("maintenance_window_required"))
            with Horizontal(classes="row"):
                yield TickBox(FIELD_LABELS["requires_approval"], bool(spec.get("requires_approval")),
                              id=field_id("requires_approval"))
                yield TickBox(FIELD_LABELS["rollback_mandatory"], bool(spec.get("rollback_mandatory")),
                              id=field_id("rollback_mandatory"))
            with Horizontal(classes="row"):
                yield TickBox(FIELD_LABELS["calibrated"], bool(spec.get("calibrated")), id=field_id("calibrated"))
                yield TickBox(FIELD_LABELS["per_service"], bool(spec.get("per_service")), id=field_id("per_service"))
            yield Static("Reason (audit log, optional)", classes="field-label")
            yield Input("", placeholder="why", id="pol-reason")
            yield Static("", id="validation")
            with Horizontal(id="dialog-buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#pol-name" if not self.policy else "#pol-command-types", Input).focus()
        self.validate()

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in (*INTS, "confidence_threshold", *TEXTS, *LISTS):
            out[key] = self.query_one("#" + field_id(key), Input).value
        for key in FLAGS:
            out[key] = self.query_one("#" + field_id(key), Checkbox).value
        out["notification_level"] = self.query_one("#" + field_id("notification_level"), Select).value
        return out

    def changes(self) -> dict[str, Any]:
        return read_fields(self.values())

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def validate(self) -> None:
        out = self.query_one("#validation", Static)
        try:
            self.valid = validate(self.policy_name, self.changes(), new=self.policy is None)
        except GovconError as exc:
            self.valid = None
            out.update(Text(f"✗ {exc}", "red"))
            return
        self.query_one("#policy-error", Static).update("")
        out.update(Text(f"✓ valid: {', '.join(self.valid['commandTypes'])} · {limits_text(self.valid)}", "green"))

    def action_save(self) -> None:
        try:
            changes = self.changes()
            validate(self.policy_name, changes, new=self.policy is None)
        except GovconError as exc:
            self._refused(str(exc))
            return
        reason = self.query_one("#pol-reason", Input).value.strip()
        self._save(self.policy_name, changes, reason)

    @work(thread=True, exit_on_error=False, group="policy-save")
    def _save(self, name: str, changes: dict[str, Any], reason: str) -> None:
        app = self.app
        try:
            value = app.gov.policy_book.set(app.operator, name, changes, replace=True, reason=reason)
            self.post_message(self.Saved(value, None, ""))
        except Exception as exc:
            self.post_message(self.Saved(None, refusal_text(describe_error(exc), name), error_title(exc)))



# --- what screen 5 calls: the role first, then the dialog ------------------------------------------


def with_role(screen, action: str, then: Callable[[], object]) -> None:
    """Ask (in a worker thread) whether the operator holds a role ``action`` needs; ``then()`` opens the
    dialog on the event loop, or the refusal — naming the roles — is a toast and no dialog opens."""
    app = screen.app

    def check() -> None:
        try:
            app.gov.require(app.operator, action)
        except Exception as exc:
            app.call_from_thread(app.notify, describe_error(exc), title=error_title(exc), severity="error",
                                 markup=False)
            return
        app.call_from_thread(then)

    screen.run_worker(check, thread=True, group="role-check", exit_on_error=False)


def edit_policy(screen, policy: dict[str, Any] | None, done: Callable[[], None]) -> None:
    """`e` (``policy``) or `n` (None) on the policy list."""
    def saved(result: dict[str, Any] | None) -> None:
        if result is None:
            return
        name = result["policy"]["name"]
        verb = "created" if result["created"] else "saved" if result["changed"] else "unchanged:"
        screen.app.notify(f"{verb} policy {name!r}: the gate decides by it now", title="Policy saved", markup=False)
        done()

    with_role(screen, EDIT_ACTION, lambda: screen.app.push_screen(PolicyEditModal(policy), saved))


def delete_policy(screen, policy: dict[str, Any]) -> None:
    """`d` on the policy list: a confirmation naming what the gate will do without it."""
    name = policy["name"]
    app = screen.app

    def confirmed(answer: dict[str, Any] | None) -> None:
        if answer is None:
            return
        # app.perform: a worker thread; its toast, then screen 5 reads the policies again (refresh_all)
        app.perform(lambda: app.gov.policy_book.delete(app.operator, name, reason=answer["reason"]),
                    lambda _r: f"deleted policy {name!r}: {', '.join(policy['commandTypes'])} no longer limited "
                               "by it", title="Policy deleted")

    types = ", ".join(policy["commandTypes"])
    body = (f"Delete the gate policy {escape(name)!r}? Its command types ({types}) are then "
            f"judged without its limits ({limits_text(policy)}). Recorded in the audit log with what it was.")
    with_role(screen, EDIT_ACTION, lambda: app.push_screen(
        ConfirmModal(f"Delete policy {escape(name)}", body, confirm="Delete (ctrl+s)",
                     ask=Ask(reason_label="Reason (audit log):", reason_optional=True,
                             reason_default="deleted in the console")), confirmed))
