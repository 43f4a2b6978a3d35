"""GovconApp: the operator console."""

from __future__ import annotations

from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from engine.governance import Governance
from screens.dashboard import DashboardScreen


class GovconApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "govcon"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="quit", tooltip="Leave the console"),
    ]

    def __init__(self, gov: Governance, *, operator: str, demo: bool = False) -> None:
        super().__init__()
        self.gov = gov
        self.operator = operator
        self.demo = demo

    def on_mount(self) -> None:
        self.sub_title = f"{self.operator} @ {self.gov.store.display_url}"
        self.push_screen(DashboardScreen())
