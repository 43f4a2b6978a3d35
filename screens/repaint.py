"""Updating a Static without laying out the whole screen again when its height does not change.

Textual's ``Static.update`` asks for a layout of the screen on every call (``refresh(layout=True)``): the
compositor then arranges every widget again and measures every auto-height pane (rendering the Rich tables
inside them to count their lines). The console's panes that change every second (the status header's read
time, the breakers' readings) keep their height almost always, so for them that layout is wasted: here
the new content is measured once, at the widget's width, and the layout asked for only when its height
differs from the last one measured (or the width changed since). What is drawn is the same either way.

Measuring a Rich renderable (the breakers' table) means rendering it, and drawing it renders it again: a
``RenderedOnce`` keeps the segments of its last render, so the measure and the drawing at the same width
and options render the table once between them.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.protocol import is_renderable
from rich.segment import Segment
from rich.text import Text
from textual.visual import Visual, VisualType
from textual.widgets import Static


class RenderedOnce:
    """A Rich renderable whose last render is kept and given again for the same console options (all but
    the height, which a table, a text or a group of them does not read). Anything else renders afresh."""

    def __init__(self, renderable: Any) -> None:
        self.renderable = renderable
        self._key: tuple | None = None
        self._segments: list[Segment] = []

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        key = (id(console), options.size, options.legacy_windows, options.min_width, options.max_width,
               options.is_terminal, options.encoding, options.justify, options.overflow, options.no_wrap,
               options.highlight, options.markup)
        if key != self._key:
            self._segments = list(console.render(self.renderable, options))
            self._key = key
        yield from self._segments


_MEASURED = "_govcon_measured"  # (content width, content height, visual) of the content last set through here


def update_in_place(static: Static, content: VisualType) -> bool:
    """``static.update(content)``, with a layout only when the content's height (at the widget's present
    content width) differs from the last one measured here. Returns whether a layout was asked for.

    Only for widgets whose width does not depend on their content (a ``width: auto`` widget is always laid
    out) and that are laid out already (before, there is no width to measure at). A text equal to the one
    shown (the same characters and styles) is not set again: nothing to repaint."""
    if isinstance(content, (str, Text)) and content == static.content:
        return False
    if is_renderable(content) and not isinstance(content, (str, Text, Visual)):
        content = RenderedOnce(content)
    width = static.content_region.width
    declared = static.styles.width  # None: as wide as its container
    if width <= 0 or not static.is_mounted or (declared is not None and declared.is_auto):
        static.update(content)
        setattr(static, _MEASURED, None)
        return True
    last = getattr(static, _MEASURED, None)
    if last is not None and last[2] is not static.visual:  # set by a plain update since: its height is unknown
        last = None
    static.update(content, layout=False)
    # as Widget.get_content_height measures it (Textual passes the styles where its stub says RulesMap)
    visual = static.visual
    measured = (width, visual.get_height(static.styles, width))  # type: ignore[arg-type]
    layout = last is None or last[:2] != measured
    setattr(static, _MEASURED, (*measured, visual))
    if layout:
        static.refresh(layout=True)
    return layout
