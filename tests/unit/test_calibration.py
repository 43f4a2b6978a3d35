"""Calibration arithmetic against bins, Brier score and ECE computed by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.calibration import bin_index, calibrate

# 7 of 10 succeed at a stated 0.95; 1 of 2 at a stated 0.55
HAND = [(0.95, True)] * 7 + [(0.95, False)] * 3 + [(0.55, True), (0.55, False)]


def test_bins_brier_and_ece_match_the_hand_computation():
    cal = calibrate("rollback-bot", "restart_service", HAND)
    assert (cal.outcomes, cal.succeeded) == (12, 8)
    top, mid = cal.bins[9], cal.bins[5]
    assert (top.count, top.stated_mean, top.observed) == (10, pytest.approx(0.95), pytest.approx(0.7))
    assert (mid.count, mid.stated_mean, mid.observed) == (2, pytest.approx(0.55), pytest.approx(0.5))
    assert [b.count for b in cal.bins] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 10]
    # Brier: (7*0.05² + 3*0.95² + 0.45² + 0.55²) / 12 = 3.23 / 12
    assert cal.brier == pytest.approx(3.23 / 12)
    # ECE: (10*|0.7-0.95| + 2*|0.5-0.55|) / 12
    assert cal.ece == pytest.approx(2.6 / 12)
    assert cal.bins[0].observed is None and cal.bins[0].stated_mean is None


def test_no_outcomes_gives_null_figures_not_zeros():
    cal = calibrate("new-bot", None, [])
    assert (cal.outcomes, cal.brier, cal.ece) == (0, None, None)
    doc = cal.to_json()
    assert doc["brier"] is None and all(b["observed"] is None and b["count"] == 0 for b in doc["bins"])


def test_the_gate_uses_the_observed_rate_only_once_the_bin_has_enough_outcomes():
    cal = calibrate("rollback-bot", "restart_service", HAND, min_outcomes=10)
    value, note = cal.judge(0.93)
    assert value == pytest.approx(0.7) and "succeeded 7 of 10" in note and "stated 0.93" in note
    value, note = cal.judge(0.58)  # bin 0.5-0.6 holds two outcomes
    assert value == 0.58 and "has 2 outcomes" in note and "needs 10" in note


@pytest.mark.parametrize("confidence, index", [(0.0, 0), (0.0999, 0), (0.1, 1), (0.95, 9), (1.0, 9)])
def test_bin_edges(confidence, index):
    assert bin_index(confidence) == index


@pytest.mark.parametrize("confidence", [-0.01, 1.01, float("nan")])
def test_confidence_outside_zero_to_one_is_refused(confidence):
    with pytest.raises(ValueError, match="outside 0..1"):
        bin_index(confidence)


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=200))
def test_properties(pairs):
    cal = calibrate("a", None, pairs)
    assert sum(b.count for b in cal.bins) == len(pairs) == cal.outcomes
    assert 0.0 <= cal.brier <= 1.0 and 0.0 <= cal.ece <= 1.0
    for b in cal.bins:
        if b.count:
            assert b.low <= b.stated_mean <= b.high and 0.0 <= b.observed <= 1.0
    perfect = calibrate("a", None, [(1.0, True)] * len(pairs))
    assert perfect.brier == 0.0 and perfect.ece == 0.0


def test_a_bins_stated_mean_stays_inside_the_bin_despite_float_sums():
    # found by hypothesis: three 0.7s summed and divided came out 0.6999999999999998, below the bin's 0.7
    cal = calibrate("a", None, [(0.7, False)] * 3)
    (b,) = [b for b in cal.bins if b.count]
    assert b.low <= b.stated_mean <= b.high and b.stated_mean == 0.7
