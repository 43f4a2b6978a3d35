"""The plot widget's renderer (plotext through its public ``figure`` API, imported the ordinary way):
plots fit their frames, rates sit on a 0–100% axis, one busy hour does not flatten the rest, flat data
gets a real axis."""

from __future__ import annotations

import re

import pytest

from screens.plot import PlotSpec, Series, render_plot, robust_top

XS = tuple(float(i - 48) for i in range(49))
TICKS = ((-48.0, "-48h"), (-24.0, "-24h"), (0.0, "now"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _rows(text: str) -> list[str]:
    return ANSI.sub("", text).splitlines()


def _rows_with(rows: list[str], mark: str) -> set[int]:
    return {i for i, row in enumerate(rows) if mark in row.split("┤", 1)[-1].split("│", 1)[0]}


@pytest.mark.parametrize("width,height", [(36, 6), (55, 8), (57, 12)])
def test_every_line_fits_the_frame_exactly(width, height):
    spec = PlotSpec((Series("ok", XS, tuple(99.0 for _ in XS)), Series("err", XS, tuple(1.0 for _ in XS))),
                    xticks=TICKS, ylim=(0.0, 100.0), yticks=(0.0, 50.0, 100.0), unit="%")
    for color in (True, False):
        rows = _rows(render_plot(spec, width, height, color=color))
        assert len(rows) == height
        assert {len(r) for r in rows} == {width}, rows
        assert rows[-1].rstrip().endswith("now")  # the last tick label whole, inside the frame


def test_success_and_error_rates_land_on_different_rows_of_a_0_to_100_axis():
    spec = PlotSpec((Series("ok", XS, tuple(99.5 for _ in XS)), Series("err", XS, tuple(0.5 for _ in XS))),
                    xticks=TICKS, ylim=(0.0, 100.0), yticks=(0.0, 50.0, 100.0), unit="%")
    rows = _rows(render_plot(spec, 55, 9, color=False))
    labels = [r.split("┤")[0].strip() for r in rows if "┤" in r]
    assert labels == ["100%", "50%", "0%"]            # not 101.0 / 100.5 / 99.0 around flat data
    top = next(i for i, r in enumerate(rows) if r.strip().startswith("100%"))
    bottom = next(i for i, r in enumerate(rows) if r.strip().startswith("0%"))
    drawn = [i for i, r in enumerate(rows) if re.search("[▄▀▖▗▘▝⠁-⣿]", r.split("┤", 1)[-1])]
    assert drawn and min(drawn) <= top + 1 and max(drawn) >= bottom - 1 and bottom - top >= 4


def test_one_busy_hour_does_not_flatten_the_others():
    ys = [20.0 + i % 3 for i in range(49)]
    ys[10] = 900.0
    top, cut = robust_top(ys)
    assert cut and 22 <= top <= 40
    rows = _rows(render_plot(PlotSpec((Series("n", XS, tuple(ys), bars=True),), xticks=TICKS), 55, 10,
                             color=False))
    full = [r for r in rows if "┤" in r or "│" in r[:6]][:-1]
    assert any(r.split("┤")[0].strip().endswith("+") for r in rows if "┤" in r)  # the axis says it is cut
    # the ordinary hours fill most of the plot's height, not one row
    assert sum(1 for r in full if r.count("█") > 30) >= 4
    assert robust_top([5.0] * 10) == (5.0, False) and robust_top([0.0] * 4) == (1.0, False)


def test_flat_data_gets_a_real_axis():
    rows = _rows(render_plot(PlotSpec((Series("n", XS, tuple(0.0 for _ in XS)),), xticks=TICKS), 40, 7,
                             color=False))
    labels = [r.split("┤")[0].strip() for r in rows if "┤" in r]
    assert labels[-1] == "0" and all(not lab.startswith("-") for lab in labels)


def test_an_empty_or_tiny_plot_says_so_instead_of_drawing():
    assert render_plot(PlotSpec(), 60, 10) == "no data yet"
    spec = PlotSpec(series=(Series("ok", (1.0, 2.0), (None, None)),), empty="nothing in 48 h")
    assert render_plot(spec, 60, 10) == "nothing in 48 h"
    assert render_plot(PlotSpec(series=(Series("ok", (1.0, 2.0), (1.0, 2.0)),)), 10, 10) == "no data yet"


def test_plotext_is_imported_the_ordinary_way():
    import sys

    from screens.plot import import_plotext
    plotext = import_plotext()
    assert plotext is sys.modules["plotext"] and plotext.doc is not None  # no stand-in for its help pages
    assert not isinstance(sys.modules.get("plotext._doc.doc"), type(None))
