"""The baseline for the console's launch benchmark: a bare Textual app with the dashboard's widgets.

Same layout and widget types as the console's dashboard (the console's stylesheet, a docked two-line
header, a scrolling pair of columns of bordered panes holding Statics, two DataTables with rows, three
plot-sized Statics, a docked key bar), with static content: no store, no engine, no workers. It writes
the wall-clock time to $GOVCON_BENCH_READY_FILE once its first screen has been painted, as the console
does for its first complete dashboard. Run as a script: ``python tests/bench/bare_dashboard.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

CSS_FILE = Path(__file__).resolve().parents[2] / "screens" / "app.tcss"
PLOT = "\n".join("│" + "".join("•" if (x * 7 + y * 3) % 11 == 0 else " " for x in range(50)) for y in range(5))


class Pane(Vertical):
    DEFAULT_CSS = """
    Pane { border: round $secondary; border-title-color: $text; border-title-style: bold; height: auto;
           padding: 0 1; }
    Pane:focus-within { border: round $accent; }
    """

    def __init__(self, *children, title: str = "", **kwargs) -> None:
        super().__init__(*children, **kwargs)
        self.border_title = title


class Table(DataTable):
    DEFAULT_CSS = "Table { height: auto; max-height: 16; overflow-x: hidden; }"

    def __init__(self, columns: tuple[str, ...], rows: list[tuple[str, ...]], **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._columns, self._rows = columns, rows

    def on_mount(self) -> None:
        self.add_columns(*self._columns)
        for i, row in enumerate(self._rows):
            self.add_row(*row, key=str(i))


class Header(Static):
    DEFAULT_CSS = "Header { dock: top; height: auto; background: $panel; padding: 0 1; }"


class KeyBar(Static):
    DEFAULT_CSS = "KeyBar { dock: bottom; height: auto; max-height: 3; background: $panel; padding: 0 1; }"


class DashboardScreen(Screen):  # the console's class name, so that its stylesheet applies
    def compose(self) -> ComposeResult:
        yield Header(" L3   kill switch off  · 1 unresolved  · no validation period\n"
                     "[1 Dashboard] store ok · leader console:bench@host:1 · bench (admin) · 12:00:00Z")
        with VerticalScroll(id="dash"):
            with Vertical(id="dash-left", classes="column"):
                yield Pane(Static("\n".join(f"closed    Rule {i}  last trip –\n"
                                            f"          now 0.0% of 12 · trips when errorRate > 5% in 5m"
                                            for i in range(5)), id="breakers"),
                           title="Circuit breakers", id="pane-breakers")
                yield Pane(Table(("when", "severity", "rule · type", "action"),
                                 [("11-20 11:57", "high", "Repeated Command Failures · restart_service",
                                   "pause_command_type")], id="unresolved"),
                           Static("", id="unresolved-note"), title="Unresolved events  (r resolve)",
                           id="pane-unresolved")
                yield Pane(Table(("proposal", "phases", "needs", "expires", "commands"), [], id="pending"),
                           Static("none pending", id="pending-note"),
                           title="Pending proposals  (a approve · x reject)", id="pane-pending")
            with Vertical(id="dash-right", classes="column"):
                yield Pane(Static("61.3% (49/80 points) not ready\n" + "\n".join(
                    f"{c:<15}{'█' * 12}{'░' * 8}  60%" for c in ("technical", "process", "organizational"))),
                    title="Readiness", id="pane-readiness")
                yield Pane(Static("Success % (left) and error % (right), hourly", classes="plot-title"),
                           Static(PLOT, classes="plot"),
                           Static("Commands finished per hour", classes="plot-title"), Static(PLOT, classes="plot"),
                           Static("Readiness score over time (95% line: ready)", classes="plot-title"),
                           Static(PLOT, classes="plot"), Static("", id="trend-notes"),
                           title="Trends", id="pane-trends")
        yield KeyBar("1-7 Screens  a Approve  x Reject  r Resolve  L Revert L3  ! Kill switch  c Cycle  "
                     "/ Filter  ? Help  q Quit")

    def on_mount(self) -> None:
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        path = os.environ.get("GOVCON_BENCH_READY_FILE")
        if path:
            with open(path, "w") as f:
                f.write(f"{time.time():.6f}\n")


class BareDashboard(App):
    CSS_PATH = CSS_FILE
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    MODES = {"dashboard": DashboardScreen}
    CSS = "#pane-trends .plot { height: 6; }"
    BINDINGS = [("q", "quit", "Quit")]

    def on_mount(self) -> None:
        self.switch_mode("dashboard")


if __name__ == "__main__":
    BareDashboard().run()
