"""`?`: every key (the contract's, then this screen's own) and what it does."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from screens.keys import KEYS


def help_table(screen: Screen | None) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    table.add_column("key", style="bold", no_wrap=True, width=7)
    table.add_column("what it does", ratio=1)
    for k in KEYS:
        table.add_row(k.display, k.tooltip)
    table.add_row("ctrl+p", "Open the command palette (also :)")
    own = [b for b in getattr(screen, "BINDINGS", []) if isinstance(b, Binding) and b.show]
    if own:
        table.add_row("", "")
        table.add_row("", f"[b]on this screen ({getattr(screen, 'SCREEN_TITLE', '')})[/]")
        for b in own:
            table.add_row(b.key_display or b.key, b.tooltip or b.description)
    table.add_row("", "")
    table.add_row("tab", "Move between panes; arrows move in lists; Enter opens or confirms; Esc closes")
    return table


class HelpModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close", tooltip="Close help")]

    def __init__(self, under: Screen | None) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="help"):
            yield Static("Keys", id="dialog-title")
            yield Static(help_table(self.under))

    def action_close(self) -> None:
        self.dismiss(None)
