"""A breaker event's drill-down (Enter on an event, on 2 or the dashboard): what made it trip — the
commands and incidents of its window, the rule's metric against its threshold — what it did, and how it
was resolved. The answer is the engine's (engine/drilldown.py), drawn by the text `govcon events show`
prints; the view scrolls (arrows, j/k, PageUp/PageDown, Home/End), `r` resolves the event, Esc goes back."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from screens.base import GovScreen
from screens.data import LiveData
from screens.drilldown_text import drilldown_text
from screens.fmt import safe
from screens.keys import SCREENS
from screens.widgets import DetailPane

EVENT_FIELDS = ("id", "ruleName", "timestamp", "severity", "action", "commandType", "observed", "shadow", "resolved",
                "resolvedBy", "resolvedAt", "note", "falsePositive")


def load_drilldown(gov, event_id: str) -> dict[str, Any]:
    return gov.drilldown.show(event_id)


def _load_drawn(gov, event_id: str) -> tuple[dict[str, Any], Text]:
    """The answer and its text, both built in the worker: the main thread only hands the text over."""
    doc = load_drilldown(gov, event_id)
    return doc, safe(drilldown_text(doc))


class DrilldownScreen(GovScreen):
    SCREEN_NAME = "drilldown"
    SCREEN_TITLE = "Breaker event drill-down"
    DEFAULT_CSS = """
    DrilldownScreen #pane-drill { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="drilldown.back", key_display="Esc",
                tooltip="Back to the list of events"),
        # 1-8 leave the drill-down for that screen (the app's own would do nothing for the screen it is on)
        *(Binding(k, f"leave('{name}')", title, show=False) for k, name, title in SCREENS),
    ]

    def __init__(self, event_id: str) -> None:
        super().__init__()
        self.event_id = event_id
        self.doc: dict[str, Any] | None = None

    def compose_body(self) -> ComposeResult:
        yield DetailPane(Static("reading the event's window…", id="drill"),
                         title=f"Drill-down {self.event_id}  (↑↓ PgUp PgDn scroll · r resolve · Esc back)",
                         id="pane-drill")

    def on_mount(self) -> None:
        self.query_one("#pane-drill", DetailPane).focus()

    def reload(self) -> None:
        if self.doc is None:  # the window does not change; a resolution is noticed in on_live
            self.load("drill", lambda: _load_drawn(self.app.gov, self.event_id))

    def on_live(self, live: LiveData) -> None:
        if self.doc is None:
            return
        now = next((e for e in live.recent if e["id"] == self.event_id), None)
        if now is not None and now["resolved"] != self.doc["resolved"]:
            self.load("drill", lambda: _load_drawn(self.app.gov, self.event_id))

    def loaded(self, key: str, value: Any) -> None:
        self.doc, text = value
        self.query_one("#drill", Static).update(text)

    def load_failed(self, key: str, error: str) -> None:
        self.query_one("#drill", Static).update(Text(f"cannot show {self.event_id}: {error}", "bold red"))

    def selected_event(self) -> dict[str, Any] | None:
        return None if self.doc is None else {k: self.doc[k] for k in EVENT_FIELDS}

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_leave(self, mode: str) -> None:
        self.app.pop_screen()
        self.app.action_show(mode)
