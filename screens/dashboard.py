"""Dashboard (key 1): governance status at a glance, refreshed from the store in a worker."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from console.render import pct


class DashboardScreen(Screen):
    REFRESH_SECONDS = 1.0

    class StatusLoaded(Message):
        def __init__(self, doc: dict[str, Any] | None, error: str | None) -> None:
            super().__init__()
            self.doc = doc
            self.error = error

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.load_status()
        self.set_interval(self.REFRESH_SECONDS, self.load_status)

    @work(thread=True, exclusive=True, group="status")
    def load_status(self) -> None:
        try:
            doc = self.app.gov.status()
            self.post_message(self.StatusLoaded(doc, None))
        except Exception as exc:  # the store may be unreachable; the console keeps running
            self.post_message(self.StatusLoaded(None, str(exc)))

    @on(StatusLoaded)
    def show_status(self, message: StatusLoaded) -> None:
        widget = self.query_one("#status", Static)
        if message.error:
            widget.update(f"[b red]store unavailable[/]: {message.error}")
            return
        d = message.doc
        ks = d["killSwitch"]
        lines = [
            f"[b]Phase[/]        {d['currentPhase']}  since {d['phaseStartDate']}",
            f"[b]Whitelist[/]    {', '.join(d['commandWhitelist']) or '(none)'}",
            f"[b]Paused[/]       {', '.join(d['pausedCommandTypes']) or '(none)'}",
            f"[b]Kill switch[/]  " + (f"[b red]ENGAGED[/] by {ks['by']}: {ks['reason']}" if ks["engaged"]
                                      else "released"),
            f"[b]Breakers[/]     {d['breakerMode']} mode, {d['unresolvedEvents']} unresolved events",
            f"[b]Readiness[/]    {pct(d['readinessScore'], 1)}",
        ]
        widget.update("\n".join(lines))
