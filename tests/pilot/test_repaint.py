"""screens/repaint: a Static updated in place is laid out again only when its height changes, and a Rich
table in it is rendered once per update, drawing exactly what Static.update would have drawn."""

from __future__ import annotations

import pytest
import rich.table
from rich.table import Table as RichTable
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from screens.repaint import RenderedOnce, update_in_place

pytestmark = pytest.mark.anyio


def table(*rows: str) -> RichTable:
    t = RichTable(box=None, expand=True, show_header=False, padding=(0, 1, 0, 0))
    t.add_column("state", no_wrap=True, width=9)
    t.add_column("rule", ratio=1)
    for row in rows:
        t.add_row(Text("CLOSED", "green"), Text(row))
    return t


class TwoPanes(App):
    CSS = "Vertical { height: auto; border: round white; } Static { height: auto; }"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="a")
        yield Static("below", id="b")


def layouts(app: App) -> list[int]:
    """Count the screen's layouts from now on."""
    screen, count = app.screen, [0]
    original = screen._refresh_layout

    def counted(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    screen._refresh_layout = counted  # type: ignore[method-assign]
    return count


async def test_same_height_repaints_without_layout_and_a_taller_one_is_laid_out():
    app = TwoPanes()
    async with app.run_test(size=(60, 12)) as pilot:
        a, b = app.query_one("#a", Static), app.query_one("#b", Static)
        assert update_in_place(a, table("one rule, now 1%"))  # first: nothing measured yet
        await pilot.pause()
        assert a.size.height == 1 and b.region.y == 3
        count = layouts(app)
        assert not update_in_place(a, table("one rule, now 2%"))
        await pilot.pause()
        assert count[0] == 0
        assert "now 2%" in "".join(a.render_line(0).text)
        assert update_in_place(a, table("one rule, now 3%", "and a second rule"))
        await pilot.pause()
        assert count[0] >= 1 and a.size.height == 2 and b.region.y == 4  # the pane grew, what is below moved
        assert update_in_place(a, Text("a\nb\nc"))  # text: measured the same way
        await pilot.pause()
        assert a.size.height == 3
        a.update("one\ntwo\nthree\nfour")  # a plain update in between: what it set is not trusted
        await pilot.pause()
        assert a.size.height == 4
        assert update_in_place(a, Text("x\ny\nz"))
        await pilot.pause()
        assert a.size.height == 3


async def test_rendered_once_draws_what_the_table_draws_and_renders_it_once(monkeypatch):
    rows = ("Error Rate  last trip –\nnow 0.4% · trips when > 5% in 10m", "Latency p99 " * 8)
    shown = {}
    for wrapped in (False, True):
        app = TwoPanes()
        async with app.run_test(size=(60, 12)) as pilot:
            a = app.query_one("#a", Static)
            update_in_place(a, table("first"))
            await pilot.pause()
            renders = []
            original = rich.table.Table.__rich_console__

            def counted(self, console, options, original=original, renders=renders):
                renders.append(options.max_width)
                return original(self, console, options)

            monkeypatch.setattr(rich.table.Table, "__rich_console__", counted)
            if wrapped:
                update_in_place(a, table(*rows))
            else:
                a.update(table(*rows))
            await pilot.pause()
            monkeypatch.undo()
            shown[wrapped] = [a.render_line(y).text for y in range(a.size.height)]
            if wrapped:
                assert isinstance(a.content, RenderedOnce) and len(renders) == 1
            else:
                assert len(renders) >= 2  # Textual: measured for the layout, then drawn
    assert shown[True] == shown[False] and len(shown[True]) > 2
