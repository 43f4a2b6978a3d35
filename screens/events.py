"""Breaker events (key 2): every trip, newest first; the detail shows what the breaker observed and how
the event was resolved. `r` resolves the selected one, `/` filters (rule, type, severity, open…)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import DataTable, Static

from screens.base import GovScreen
from screens.data import LiveData
from screens.fmt import SEVERITY_STYLE, matches, observed_lines, safe, short_time
from screens.widgets import DetailPane, Pane, Table

LIMIT = 500


def status_of(e: dict[str, Any]) -> str:
    if not e["resolved"]:
        return "OPEN"
    return "false positive" if e["falsePositive"] else "resolved"


def event_detail(e: dict[str, Any] | None) -> Text:
    if e is None:
        return Text("no event selected", "dim")
    t = Text()
    t.append(f"{e['ruleName']}", "bold")
    t.append(f"  {status_of(e)}\n", "bold red" if not e["resolved"] else "green")
    t.append(f"id {e['id']} · {e['timestamp']}\n", "dim")
    t.append(f"severity {e['severity']} · action {e['action']}"
             + (f" · command type {e['commandType']}" if e["commandType"] else "")
             + (" · SHADOW (nothing changed)" if e["shadow"] else "") + "\n")
    t.append("Observed\n", "bold")
    for line in observed_lines(e.get("observed")):
        t.append(f"  {line}\n")
    if e["resolved"]:
        t.append("Resolution\n", "bold")
        t.append(f"  by {e['resolvedBy']} at {e['resolvedAt']}"
                 + (" · false positive" if e["falsePositive"] else "") + "\n")
        t.append(f"  {e['note']}\n")
    else:
        t.append("\nr resolves it (note, false-positive flag)", "dim")
    return t


class EventsScreen(GovScreen):
    SCREEN_NAME = "events"
    SCREEN_TITLE = "2 Breaker events"
    FILTER_WHAT = "breaker events (rule, type, severity, open, resolved, shadow)"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def compose_body(self) -> ComposeResult:
        with Container(id="split"):
            yield Pane(Table(("when", "severity", "status", "rule", "type", "action"), id="events"),
                       Static("loading…", id="events-note"), title="Breaker events  (r resolve · / filter)",
                       id="pane-events", classes="list")
            yield DetailPane(Static("", id="event-detail"), title="Detail", id="pane-detail", classes="detail")

    def on_mount(self) -> None:
        self.query_one("#events", Table).focus()

    def reload(self) -> None:
        self.load("events", lambda: self.app.gov.breaker_events(limit=LIMIT))

    def on_live(self, live: LiveData) -> None:
        if live.recent_ids and not live.recent_ids <= {e["id"] for e in self.events}:
            self.reload()

    def loaded(self, key: str, value: Any) -> None:
        self.events = value
        self._redraw()

    def _visible(self) -> list[dict[str, Any]]:
        if not self.filter_text:
            return self.events
        return [e for e in self.events if matches(self.filter_text, e["ruleName"], e["commandType"], e["severity"],
                                                   e["action"], status_of(e), "shadow" if e["shadow"] else "")]

    def _redraw(self) -> None:
        visible = self._visible()
        self.query_one("#events", Table).set_rows(
            (e["id"], (short_time(e["timestamp"]), Text(e["severity"], SEVERITY_STYLE.get(e["severity"], "")),
                       Text(status_of(e), "bold red" if not e["resolved"] else "green"), e["ruleName"],
                       e["commandType"] or "–", e["action"] + (" (shadow)" if e["shadow"] else "")))
            for e in visible)
        note = f"{len(visible)} of {len(self.events)} events" + (f" matching {self.filter_text!r}"
                                                                  if self.filter_text else "")
        self.query_one("#events-note", Static).update(note if self.events else "no breaker has tripped yet")
        self._show_detail()

    @on(DataTable.RowHighlighted, "#events")
    def _show_detail(self) -> None:
        self.query_one("#event-detail", Static).update(safe(event_detail(self.selected_event())))

    def selected_event(self) -> dict[str, Any] | None:
        key = self.query_one("#events", Table).selected_key
        return next((e for e in self.events if e["id"] == key), None)

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self._redraw()
