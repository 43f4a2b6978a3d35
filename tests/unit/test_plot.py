"""The plot widget's renderer: plotext imported without its help pages draws exactly what the plain
import draws (each in a fresh interpreter, since plotext keeps one global figure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DRAW = """
import json, math, sys
{setup}
from screens.plot import PlotSpec, Series, render_plot
xs = tuple(float(i) for i in range(48))
spec = PlotSpec(series=(Series("ok", xs, tuple(90 + 5 * math.sin(i / 5) for i in range(48))),
                        Series("err", xs, tuple(3 + 2 * math.cos(i / 4) for i in range(48)), right=True)),
                hlines=(95.0,), vlines=(40.0,), xticks=((0.0, "-48h"), (47.0, "now")))
print(json.dumps({{"plot": render_plot(spec, 60, 10), "doc": type(sys.modules["plotext"].doc).__name__,
                  "plain": render_plot(spec, 60, 10, color=False)}}))
"""


def _draw(setup: str) -> dict:
    out = subprocess.run([sys.executable, "-c", DRAW.format(setup=setup)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_plotext_without_its_help_pages_draws_the_same_plot():
    ours = _draw("")
    plain = _draw("import plotext")  # the package imported as usual, help pages and all
    assert ours["doc"] == "NoneType" and plain["doc"] != "NoneType"
    assert ours["plot"] == plain["plot"] and ours["plain"] == plain["plain"]
    assert "\x1b[38;5;10m" in ours["plot"] and "\x1b[38;5;10m" not in ours["plain"]  # series colour, or none
    assert "now" in ours["plain"] and len(ours["plain"].splitlines()) == 10


def test_an_empty_or_tiny_plot_says_so_instead_of_drawing():
    from screens.plot import PlotSpec, Series, render_plot
    assert render_plot(PlotSpec(), 60, 10) == "no data yet"
    spec = PlotSpec(series=(Series("ok", (1.0, 2.0), (None, None)),), empty="nothing in 48 h")
    assert render_plot(spec, 60, 10) == "nothing in 48 h"
    assert render_plot(PlotSpec(series=(Series("ok", (1.0, 2.0), (1.0, 2.0)),)), 10, 10) == "no data yet"


def test_a_plotext_that_needs_more_of_its_doc_module_is_imported_the_plain_way():
    """Simulated: the doc module's stand-in lacks what plotext's __init__ asks of it (as a future release
    might): the ImportError leads to the ordinary import, and plots are drawn as before."""
    code = ("import sys, types\n"
            "sys.modules['plotext._doc.doc'] = types.ModuleType('plotext._doc.doc')  # no `docs` in it\n"
            "from screens.plot import PlotSpec, Series, import_plotext, render_plot\n"
            "plotext = import_plotext()\n"
            "assert plotext.doc is not None, 'the real help pages should be there'\n"
            "print(render_plot(PlotSpec(series=(Series('ok', (0.0, 1.0, 2.0), (1.0, 3.0, 2.0)),)), 40, 8,"
            " color=False))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) >= 8 and "┤" in out.stdout
