"""`?`: every key (the contract's, then this screen's own) and what it does."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from screens.keys import KEYS, SCREENS


def _numbers(names: tuple[str, ...]) -> list[str]:
    return [key for key, name, _ in SCREENS if name in names] + (["the drill-down"] if "drilldown" in names else [])


def help_table(screen: Screen | None) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    table.add_column("key", style="bold", no_wrap=True, width=7)
    table.add_column("what it does", ratio=1)
    for k in KEYS:
        where = f" (on {', '.join(_numbers(k.screens))})" if k.screens else ""
        if len(_numbers(k.screens)) == len(SCREENS) and "drilldown" not in k.screens:
            where = " (on 1-8, not in the drill-down)"
        table.add_row(k.display, k.tooltip + where)
    table.add_row("ctrl+p", "Open the command palette (also :)")
    # the screen's keys: those in its key bar, and those kept out of it for room but documented (an id)
    own = [b for b in getattr(screen, "BINDINGS", []) if isinstance(b, Binding) and (b.show or b.id)]
    if own:
        table.add_row("", "")
        table.add_row("", f"[b]on this screen ({getattr(screen, 'SCREEN_TITLE', '')})[/]")
        for b in own:
            table.add_row(b.key_display or b.key, b.tooltip or b.description)
    table.add_row("", "")
    table.add_row("tab", "Move between panes; arrows (or j/k) move in lists; Enter opens or confirms; Esc closes")
    return table


class HelpScroll(VerticalScroll):
    """Help's body: focused, so arrows, PageUp/PageDown, Home/End and j/k scroll it at 80x24."""

    BINDINGS = [Binding("j", "scroll_down", "Down", show=False), Binding("k", "scroll_up", "Up", show=False)]


class HelpModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close", tooltip="Close help")]

    def __init__(self, under: Screen | None) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with HelpScroll(id="dialog", classes="help"):
            yield Static("Keys (arrows, PageUp/PageDown or j/k scroll; Esc closes)", id="dialog-title")
            yield Static(help_table(self.under))

    def on_mount(self) -> None:
        self.query_one(HelpScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
