"""screens/widgets.Table: cells are text, never Rich markup (names come from agents and operators)."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from screens.widgets import Table

pytestmark = pytest.mark.anyio


class OneTable(App):
    def compose(self) -> ComposeResult:
        yield Table(("rule · type", "p99"), id="t")


async def test_bracketed_names_are_shown_as_written_and_sized_to_fit():
    app = OneTable()
    async with app.run_test(size=(80, 10)) as pilot:
        table = app.query_one(Table)
        assert table.set_rows([("a", ("Slow Failures · db[/]restart", "Latency [p99]")),
                               ("b", ("[bold]not bold[/bold]", 12.5))])
        await pilot.pause()
        shown = "\n".join(table.render_line(y).text for y in range(3))
        assert "db[/]restart" in shown and "Latency [p99]" in shown and "[bold]not bold[/bold]" in shown
        assert [c.width for c in table.ordered_columns] == [len("Slow Failures · db[/]restart"), len("Latency [p99]")]
        assert not table.set_rows([("a", ("Slow Failures · db[/]restart", "Latency [p99]")),
                                   ("b", ("[bold]not bold[/bold]", 12.5))])  # unchanged: nothing redrawn
