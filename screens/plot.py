"""A small plot widget of our own around plotext: plotext draws text, we show it in a Static.

plotext keeps one global figure, so plots are built one at a time (a lock), in worker threads, and only
when their data or size changed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.message import Message
from textual.widgets import Static

PLOTEXT_LOCK = threading.Lock()  # plotext has one global figure


def import_plotext():
    """plotext, imported the ordinary way (its public ``figure`` API: clear, signal, bar, ruler, build).
    Imported in the plot worker thread, so its cost (help pages included) stays off the event loop."""
    import plotext

    return plotext


@dataclass(frozen=True)
class Series:
    label: str
    xs: tuple[float, ...]
    ys: tuple[float | None, ...]
    right: bool = False      # kept for callers; every series now shares the left axis (see PlotSpec.ylim)
    bars: bool = False


@dataclass(frozen=True)
class PlotSpec:
    series: tuple[Series, ...] = ()
    hlines: tuple[float, ...] = ()        # horizontal reference lines (thresholds)
    vlines: tuple[float, ...] = ()        # vertical markers (a predicted crossing)
    xlim: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None   # fixed axis (rates: 0–100); None: from the data, robustly
    xticks: tuple[tuple[float, str], ...] = ()
    yticks: tuple[float, ...] = ()
    empty: str = "no data yet"
    unit: str = ""                            # appended to the y tick labels ("%")


def robust_top(values: list[float]) -> tuple[float, bool]:
    """The top of a y axis for ``values``: their maximum, unless one or two outliers stand far above the
    rest (more than 3x the 90th percentile), which would flatten everything else into one row; then 1.5x
    the 90th percentile, and True (the outliers are drawn cut at the top). Never 0 (flat zero data)."""
    if not values:
        return 1.0, False
    ordered = sorted(values)
    top = ordered[-1]
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    if p90 > 0 and top > 3 * p90:
        return p90 * 1.5, True
    return (top if top > 0 else 1.0), False


def _label(value: float, unit: str) -> str:
    return f"{value:.0f}{unit}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}{unit}"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _fit(text: str, width: int, height: int) -> str:
    """Every line exactly ``width`` cells (plotext may draw a tick label past its frame), ``height`` lines.
    An overlong line (a label row) loses its colours when cut: it is plain text either way."""
    out = []
    for line in text.splitlines()[:height]:
        visible = cell_len(_ANSI.sub("", line))
        if visible > width:
            cut = Text(_ANSI.sub("", line))
            cut.truncate(width)
            line, visible = cut.plain, cut.cell_len
        out.append(line + " " * max(0, width - visible))
    return "\n".join(out)


def render_plot(spec: PlotSpec, width: int, height: int, *, color: bool = True) -> str:
    """The plot as text, ``width`` x ``height`` cells, with ANSI colours unless ``color`` is False.

    The y axis is the spec's (rates: 0–100) or, when none is given, 0 up to the data's robust top
    (robust_top: one busy hour does not flatten the rest); flat data gets a real axis, not ±1 around it.
    """
    points = [(s, [(x, y) for x, y in zip(s.xs, s.ys, strict=False) if y is not None]) for s in spec.series]
    if width < 20 or height < 4 or not any(p for _, p in points):
        return spec.empty
    fig = import_plotext().figure
    fig.clear()
    fig.plot_size(width - 2, height)   # room for a last tick label drawn past the frame's right edge
    fig.theme("simple" if color else "colorless")
    fig.legend(False)
    if spec.ylim is not None:
        low, high = spec.ylim
        clipped = False
    else:
        high, clipped = robust_top([y for _, pts in points for _, y in pts])
        low = 0.0
    for s, pts in points:
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [min(max(p[1], low), high) for p in pts]
        fig.draw(fig.bar(xs, ys) if s.bars else fig.signal(xs, ys).lines(True))
    for y in spec.hlines:
        fig.line(y, orientation=0)
    for x in spec.vlines:
        fig.line(x, orientation=1)
    fig.ruler("y").lim(low, high)
    yticks = list(spec.yticks) or [low, (low + high) / 2, high]
    fig.ruler("y").ticks(yticks, [_label(v, spec.unit) + ("+" if clipped and v == high else "") for v in yticks])
    if spec.xlim:
        fig.ruler("x").lim(*spec.xlim)
    if spec.xticks:
        fig.ruler("x").ticks([t for t, _ in spec.xticks], [label for _, label in spec.xticks])
    return _fit(str(fig.build()), width, height)


class Plot(Static):
    """Shows a PlotSpec, re-rendered when the spec or the widget's size changes. plotext runs in a worker
    thread (one at a time, it has one global figure): a plot costs tens of milliseconds, which the event
    loop never pays. ``show`` renders in a worker of its own; a screen showing several plots at once can
    instead ask each for its key (``wanted``), render them together (``render_key``) and ``apply`` the
    results in one handler, so that they reach the terminal in one frame."""

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

    def wanted(self, spec: PlotSpec) -> tuple | None:
        """Ask for ``spec``: the key to render it by (spec, width, height, colour) when that differs from
        the last one asked for, else None (nothing to render: unchanged, or not laid out yet)."""
        self._spec = spec
        width, height = self.content_region.width, self.content_region.height
        key = (spec, width, height, not self.app.no_color)  # NO_COLOR (Textual reads it when the app starts)
        if key == self._wanted or width <= 0 or height <= 0:
            return None
        self._wanted = key
        return key

    @staticmethod
    def render_key(key: tuple) -> Text:
        """The plot a ``wanted`` key stands for, as a Text (in a worker thread: plotext is slow)."""
        spec, width, height, color = key
        with PLOTEXT_LOCK:
            text = render_plot(spec, width, height, color=color)
        return Text.from_ansi(text, no_wrap=True) if "\x1b" in text else Text(text, style="dim")

    def apply(self, key: tuple, visual: Text) -> bool:
        """Show a rendering of ``key`` unless a newer one has been asked for since (an older rendering
        arriving late is dropped). A plot's size never depends on its text: no layout."""
        if key != self._wanted:
            return False
        self.update(visual, layout=False)
        return True

    def _request(self) -> None:
        key = self.wanted(self._spec)
        if key is None:
            return

        def work() -> None:
            self.post_message(self.Rendered(key, self.render_key(key)))

        self.run_worker(work, thread=True, group="plot", exit_on_error=False)

    @on(Rendered)
    def _rendered(self, message: Rendered) -> None:
        self.apply(message.key, message.visual)
