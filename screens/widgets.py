"""Reusable widgets: a titled pane, a table that only redraws when its rows change, the dialogs' text
field."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Checkbox, DataTable, Input, Static

from screens.fmt import clean, safe


class Pane(Vertical):
    """A bordered box with a title; the unit the dashboard reflows."""

    DEFAULT_CSS = """
    Pane {
        border: round $secondary;
        border-title-color: $text;
        border-title-style: bold;
        height: auto;
        padding: 0 1;
    }
    Pane:focus-within { border: round $accent; }
    """

    def __init__(self, *children, title: str = "", **kwargs) -> None:
        super().__init__(*children, **kwargs)
        self.border_title = title


class DetailPane(VerticalScroll):
    """A titled detail that scrolls: Tab reaches it, and arrows, PageUp/PageDown, Home/End and j/k scroll
    it, so the end of a long detail (an event's resolution, an entry's details) is reachable at 80x24."""

    DEFAULT_CSS = """
    DetailPane {
        border: round $secondary;
        border-title-color: $text;
        border-title-style: bold;
        padding: 0 1;
    }
    DetailPane:focus { border: round $accent; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "scroll_down", "Down", show=False), Binding("k", "scroll_up", "Up", show=False)]

    def __init__(self, *children, title: str = "", **kwargs) -> None:
        super().__init__(*children, **kwargs)
        self.border_title = title


def _width(cell: Text) -> int:
    """The widest line of a cell."""
    return max(cell_len(line) for line in cell.plain.split("\n"))


class Table(DataTable):
    """A DataTable whose rows are replaced only when they differ from what is shown (keeps the main
    thread's work per refresh small and the cursor where the operator left it)."""

    DEFAULT_CSS = """
    Table { height: auto; max-height: 16; overflow-x: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False, tooltip="Next row (as down)"),
        Binding("k", "cursor_up", "Up", show=False, tooltip="Previous row (as up)"),
    ]

    def __init__(self, columns: Sequence[str], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._columns = tuple(columns)
        self._rows: tuple = ()
        self._keys: tuple[str, ...] = ()
        self.empty_text = "none"

    def on_mount(self) -> None:
        self._add_columns(())

    def _add_columns(self, rows: tuple) -> None:
        """The columns, each as wide as its header or its widest cell in ``rows``. Measured here rather
        than left to DataTable, which measures new rows only when it next goes idle: a frame drawn before
        that showed the header with the old widths over rows with the new ones."""
        for i, label in enumerate(self._columns):
            cells = [cells[i] for _, cells in rows if i < len(cells)]
            self.add_column(label, width=max([cell_len(label), *(_width(c) for c in cells)]))

    def set_rows(self, rows: Iterable[tuple[str, tuple[Any, ...]]]) -> bool:
        """``rows``: (key, cells). Returns whether anything changed on screen."""
        # cells as Text: a str would be read as Rich markup ("Latency [p99]" shown as "Latency ", a type
        # named "a[/]b" raising MarkupError), and names come from agents and operators
        # and control characters show escaped (fmt.safe): Textual passes ESC, CSI and bidi overrides through
        rows = tuple((key, tuple(safe(c) if isinstance(c, Text) else Text(clean(str(c))) for c in cells))
                     for key, cells in rows)
        if rows == self._rows:
            return False
        selected = self.selected_key
        self._rows = rows
        self._keys = tuple(k for k, _ in rows)
        # columns too: their widths are then measured on these rows only, not on rows shown before
        self.clear(columns=True)
        self._add_columns(rows)
        for key, cells in rows:  # a cell of two lines (the dashboard's) makes its row two rows high
            self.add_row(*cells, key=key, height=max([1, *(c.plain.count("\n") + 1 for c in cells)]))
        if selected in self._keys:
            self.move_cursor(row=self._keys.index(selected), animate=False)
        return True

    @property
    def selected_key(self) -> str | None:
        if not self._keys or self.cursor_row is None or not 0 <= self.cursor_row < len(self._keys):
            return None
        return self._keys[self.cursor_row]


class ReasonInput(Input):
    """The dialogs' text field. A `!` typed here is a character like any other: the app's `!` binding is
    not a priority one, so a focused text field takes it first; the kill switch's chord (keys.KILL_CHORD)
    is, and works here too (DESIGN.md, console keys)."""


class TickBox(Checkbox):
    """A checkbox that reads `[x]` on and `[ ]` off: Textual's shows the same X either way and tells them
    apart by colour only, which NO_COLOR (and many a terminal theme) takes away."""

    BUTTON_LEFT = "["
    BUTTON_RIGHT = "]"

    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--button")
        return Content.assemble(self.BUTTON_LEFT, ("x" if self.value else " ", style), self.BUTTON_RIGHT)


class FilterInput(Input):
    """`/`'s text field, in the screen above its lists: each keystroke narrows them (GovScreen._filter_typed).
    Esc clears the filter and gives the focus back to the list; Enter keeps it and does the same. A `!`
    typed here is a character (the app's `!` is not a priority binding; keys.KILL_CHORD is)."""

    DEFAULT_CSS = """
    FilterInput { height: 1; border: none; padding: 0 1; width: 1fr; background: $boost; }
    FilterInput:focus { border: none; background: $accent 30%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", id="filter.clear", key_display="Esc",
                tooltip="Clear the filter and go back to the list"),
    ]

    def action_clear_filter(self) -> None:
        self.screen.close_filter(clear=True)  # type: ignore[attr-defined]


class FilterRow(Horizontal):
    """The filter's line: what it filters, then the text field. Hidden until `/`."""

    DEFAULT_CSS = """
    FilterRow { height: 1; display: none; padding: 0 1; }
    FilterRow.-open { display: block; }
    FilterRow > Static { width: auto; color: $text-muted; }
    """

    def __init__(self, what: str) -> None:
        super().__init__(id="filter-row", disabled=True)  # disabled while hidden: not in the focus chain
        self.what = what

    def compose(self) -> ComposeResult:
        yield Static("Filter (Enter keeps, Esc clears): ", id="filter-what")
        yield FilterInput(placeholder=self.what, id="filter")
