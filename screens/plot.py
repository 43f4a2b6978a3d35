"""A small plot widget of our own around plotext: plotext draws text, we show it in a Static.

plotext keeps one global figure, so plots are built one at a time (a lock), in worker threads, and only
when their data or size changed.
"""

from __future__ import annotations

import sys
import threading
import types
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.message import Message
from textual.widgets import Static

PLOTEXT_LOCK = threading.Lock()  # plotext has one global figure
_DOC_MODULE = "plotext._doc.doc"
_IMPORT_LOCK = threading.Lock()
_plotext = None


def import_plotext():
    """plotext, without the help pages its package __init__ builds on import (``plotext.doc``: ~50 ms of
    a launch's CPU, which we never read). Should a plotext release need more of that module than the
    ``docs`` name, the plain import is used. Safe from any thread."""
    global _plotext
    with _IMPORT_LOCK:
        if _plotext is None:
            stub = types.ModuleType(_DOC_MODULE)
            stub.docs = None
            sys.modules.setdefault(_DOC_MODULE, stub)
            try:
                import plotext
            except ImportError:
                for name in [m for m in sys.modules if m == "plotext" or m.startswith("plotext.")]:
                    del sys.modules[name]
                import plotext
            _plotext = plotext
    return _plotext


@dataclass(frozen=True)
class Series:
    label: str
    xs: tuple[float, ...]
    ys: tuple[float | None, ...]
    right: bool = False      # plot against the right-hand y axis
    bars: bool = False


@dataclass(frozen=True)
class PlotSpec:
    series: tuple[Series, ...] = ()
    hlines: tuple[float, ...] = ()        # horizontal reference lines (thresholds)
    vlines: tuple[float, ...] = ()        # vertical markers (a predicted crossing)
    xlim: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None
    xticks: tuple[tuple[float, str], ...] = ()
    empty: str = "no data yet"


def render_plot(spec: PlotSpec, width: int, height: int, *, color: bool = True) -> str:
    """The plot as text, with ANSI colours unless ``color`` is False."""
    points = [(s, [(x, y) for x, y in zip(s.xs, s.ys, strict=False) if y is not None]) for s in spec.series]
    if width < 20 or height < 4 or not any(p for _, p in points):
        return spec.empty
    fig = import_plotext().figure
    fig.clear()
    fig.plot_size(width, height)
    fig.theme("simple" if color else "colorless")
    fig.legend(False)
    for s, pts in points:
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        side = "right" if s.right else "left"
        signal = fig.bar(xs, ys, yside=side) if s.bars else fig.signal(xs, ys, yside=side).lines(True)
        fig.draw(signal)
    for y in spec.hlines:
        fig.line(y, orientation=0)
    for x in spec.vlines:
        fig.line(x, orientation=1)
    if spec.xlim:
        fig.ruler("x").lim(*spec.xlim)
    if spec.ylim:
        fig.ruler("y").lim(*spec.ylim)
    if spec.xticks:
        fig.ruler("x").ticks([t for t, _ in spec.xticks], [label for _, label in spec.xticks])
    return str(fig.build())


class Plot(Static):
    """Shows a PlotSpec, re-rendered when the spec or the widget's size changes. plotext runs in a worker
    thread (one at a time, it has one global figure): a plot costs tens of milliseconds, which the event
    loop never pays."""

    DEFAULT_CSS = """
    Plot { height: 1fr; min-height: 6; }
    """

    class Rendered(Message):
        def __init__(self, key: tuple, visual: Text) -> None:
            super().__init__()
            self.key, self.visual = key, visual

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self._spec = PlotSpec()
        self._wanted: tuple | None = None

    def show(self, spec: PlotSpec) -> None:
        self._spec = spec
        self._request()

    def on_resize(self) -> None:
        self._request()

    def _request(self) -> None:
        spec, width, height = self._spec, self.content_region.width, self.content_region.height
        color = not self.app.no_color  # NO_COLOR (Textual reads it when the app starts)
        key = (spec, width, height)
        if key == self._wanted or width <= 0 or height <= 0:
            return
        self._wanted = key

        def work() -> None:
            with PLOTEXT_LOCK:
                text = render_plot(spec, width, height, color=color)
            visual = Text.from_ansi(text, no_wrap=True) if "\x1b" in text else Text(text, style="dim")
            self.post_message(self.Rendered(key, visual))

        self.run_worker(work, thread=True, group="plot", exit_on_error=False)

    @on(Rendered)
    def _rendered(self, message: Rendered) -> None:
        if message.key == self._wanted:  # an older rendering arriving late is dropped
            self.update(message.visual, layout=False)  # a plot's size never depends on its text
