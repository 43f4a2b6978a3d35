"""Reports (key 6): the governance reports the cycle writes, rendered as Markdown."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import DataTable, Markdown, Static

from screens.base import GovScreen
from screens.fmt import matches, short_time
from screens.widgets import DetailPane, Pane, Table

LIMIT = 50


class ReportsScreen(GovScreen):
    SCREEN_NAME = "reports"
    SCREEN_TITLE = "6 Reports"
    FILTER_WHAT = "reports (id, recommendation, text)"

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[dict[str, Any]] | None = []
        self._shown: str | None = None

    def compose_body(self) -> ComposeResult:
        with Container(id="split"):
            yield Pane(Table(("report", "created", "recommendation"), id="reports"),
                       Static("loading…", id="reports-note"), title="Governance reports  (c runs a cycle)",
                       id="pane-reports", classes="list narrow-list")
            yield DetailPane(Markdown("", id="report"), title="Report", id="pane-report", classes="detail")

    def on_mount(self) -> None:
        self.query_one("#reports", Table).focus()

    def reload(self) -> None:
        reports = self.app.gov.reports
        self.load("reports", lambda: reports.list(LIMIT))

    def loaded(self, key: str, value: Any) -> None:
        self.reports = value
        self._redraw()

    def _visible(self) -> list[dict[str, Any]]:
        return [r for r in self.reports or () if not self.filter_text
                or matches(self.filter_text, r["id"], r["recommendation"], r["markdown"])]

    def _redraw(self) -> None:
        note = self.query_one("#reports-note", Static)
        if self.reports is None:
            return  # not read yet
        visible = self._visible()
        self.query_one("#reports", Table).set_rows(
            (r["id"], (r["id"], short_time(r["createdAt"]), r["recommendation"])) for r in visible)
        note.update(f"{len(visible)} reports" if self.reports else
                    "no reports yet: the governance cycle writes one each run (c, or weekly by the scheduler)")
        self._show_report()

    @on(DataTable.RowHighlighted, "#reports")
    def _show_report(self) -> None:
        key = self.query_one("#reports", Table).selected_key
        if key == self._shown:
            return
        self._shown = key
        report = next((r for r in self.reports or () if r["id"] == key), None)
        self.query_one("#report", Markdown).update(report["markdown"] if report else "*no report selected*")

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self._redraw()
