"""Modal dialogs: a confirmation that names what will happen (optionally asking a reason, a choice,
a yes/no flag). Enter confirms, Escape cancels; no mouse needed. (`/`'s filter is no dialog: it is a line
in the screen, screens/base.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, OptionList, Static

from screens.widgets import ReasonInput, TickBox


@dataclass(frozen=True)
class Ask:
    """What a ConfirmModal asks for besides a yes."""

    reason_label: str | None = None      # a text field (required unless reason_optional)
    reason_optional: bool = False
    reason_default: str = ""             # used when an optional reason is left empty
    choices: tuple[str, ...] = ()        # pick one (e.g. the role to approve as)
    choice_label: str = ""
    flag_label: str | None = None        # a checkbox (e.g. false positive)


class ConfirmModal(ModalScreen[dict[str, Any] | None]):
    """Dismisses with {"reason", "choice", "flag"} on confirm, None on cancel."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="modal.cancel", tooltip="Close without doing anything"),
        Binding("ctrl+s", "confirm", "Confirm", id="modal.confirm", tooltip="Do what this dialog says"),
    ]

    def __init__(self, title: str, body: str, *, confirm: str = "Confirm", ask: Ask = Ask(),
                 danger: bool = True, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.title_text, self.body, self.confirm_label, self.ask, self.danger = title, body, confirm, ask, danger
        self.choice: str | None = ask.choices[0] if ask.choices else None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="danger" if self.danger else ""):
            yield Static(self.title_text, id="dialog-title")
            yield Static(self.body, id="dialog-body")
            if self.ask.choices:
                yield Static(self.ask.choice_label, classes="field-label")
                yield OptionList(*self.ask.choices, id="choice")
            if self.ask.reason_label:
                yield Static(self.ask.reason_label, classes="field-label")
                yield ReasonInput(placeholder=self.ask.reason_default or "required", id="reason")
            if self.ask.flag_label:
                yield TickBox(self.ask.flag_label, id="flag")
            yield Static("", id="dialog-error")
            with Horizontal(id="dialog-buttons"):
                yield Button(self.confirm_label, id="confirm", variant="error" if self.danger else "primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        if self.ask.choices:
            options = self.query_one("#choice", OptionList)
            options.highlighted = 0
            options.focus()
        elif self.ask.reason_label:
            self.query_one("#reason", Input).focus()
        else:
            self.query_one("#confirm", Button).focus()

    @on(OptionList.OptionHighlighted, "#choice")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.choice = str(event.option.prompt)

    @on(OptionList.OptionSelected, "#choice")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.choice = str(event.option.prompt)
        if self.ask.reason_label:
            self.query_one("#reason", Input).focus()
        else:
            self.action_confirm()

    @on(Input.Changed, "#reason")
    def _typed(self, event: Input.Changed) -> None:
        if event.value.strip():  # "… is required" no longer holds once there is a note
            self.query_one("#dialog-error", Static).update("")

    @on(Input.Submitted, "#reason")
    def _submitted(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_confirm(self) -> None:
        reason = ""
        if self.ask.reason_label:
            reason = self.query_one("#reason", Input).value.strip()
            if not reason and not self.ask.reason_optional:
                self.query_one("#dialog-error", Static).update(
                    f"{self.ask.reason_label.rstrip(':')} is required: it goes into the audit log")
                self.query_one("#reason", Input).focus()
                return
            reason = reason or self.ask.reason_default
        flag = self.query_one("#flag", Checkbox).value if self.ask.flag_label else False
        self.dismiss({"reason": reason, "choice": self.choice, "flag": flag})

    def action_cancel(self) -> None:
        self.dismiss(None)

