"""Trend statistics and threshold-crossing prediction on synthetic series with known slopes."""

from datetime import UTC, datetime, timedelta

import pytest

from engine.trends import Threshold, ema, linear_slope, predict_crossing, thresholds, trend, zscore

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def series(values, step_hours=1.0):
    return [(T0 + timedelta(hours=i * step_hours), v) for i, v in enumerate(values)]


def test_linear_slope_recovers_a_known_slope():
    vals = [0.01 + 0.002 * i for i in range(24)]
    t = trend("errorRate", series(vals))
    assert t.slope_per_hour == pytest.approx(0.002)
    assert t.latest == pytest.approx(vals[-1])
    assert linear_slope([0, 2, 4], [1.0, 1.0, 1.0]) == 0
    assert linear_slope([1], [1.0]) is None


def test_half_hourly_points_give_slope_per_hour():
    vals = [0.5 - 0.01 * i for i in range(10)]  # -0.01 per half hour
    assert trend("successRate", series(vals, 0.5)).slope_per_hour == pytest.approx(-0.02)


def test_ema_and_zscore():
    assert ema([1.0, 1.0, 1.0]) == 1.0
    assert ema([0.0, 10.0], alpha=0.5) == 5.0
    assert ema([]) is None
    flat_then_spike = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 3.0]
    assert zscore(flat_then_spike) > 10
    assert zscore([1.0, 1.0, 1.0, 1.0]) is None  # no spread, no z-score


def test_unknown_values_are_skipped():
    t = trend("errorRate", series([None, 0.01, None, 0.02, 0.03]))
    assert t.points == 3 and t.latest == 0.03


def test_predicted_crossing_time_for_a_rising_error_rate():
    now = T0 + timedelta(hours=9)
    t = trend("errorRate", series([0.01 + 0.004 * i for i in range(10)]))  # at 0.046, +0.004/h
    p = predict_crossing(t, Threshold("High Error Rate", "errorRate", ">", 0.05), now, timedelta(hours=12))
    assert p is not None
    assert p.crossing_at == now + timedelta(hours=1)  # (0.05 - 0.046) / 0.004


def test_no_prediction_when_moving_away_crossed_or_beyond_the_horizon():
    now = T0 + timedelta(hours=9)
    th = Threshold("r", "errorRate", ">", 0.05)
    falling = trend("errorRate", series([0.04 - 0.001 * i for i in range(10)]))
    assert predict_crossing(falling, th, now, timedelta(hours=12)) is None
    crossed = trend("errorRate", series([0.05 + 0.001 * i for i in range(10)]))
    assert predict_crossing(crossed, th, now, timedelta(hours=12)) is None
    slow = trend("errorRate", series([0.01 + 0.0001 * i for i in range(10)]))
    assert predict_crossing(slow, th, now, timedelta(hours=12)) is None


def test_falling_success_rate_crosses_a_lower_bound():
    th = Threshold("r", "successRate", "<", 0.99)
    t = trend("successRate", series([0.999 - 0.001 * i for i in range(5)]))  # 0.995, -0.001/h
    p = predict_crossing(t, th, T0 + timedelta(hours=4), timedelta(hours=12))
    assert p is not None and p.crossing_at == T0 + timedelta(hours=9)


def test_thresholds_come_from_simple_rate_comparisons():
    rules = [{"name": "High Error Rate", "condition": "errorRate > 0.05"},
             {"name": "Repeated", "condition": "commandType.failures >= 3"},
             {"name": "Mixed", "condition": "rollbackRate > 0.1 and failed >= 2"}]
    got = {(t.rule, t.metric, t.op, t.value) for t in thresholds(rules)}
    assert ("High Error Rate", "errorRate", ">", 0.05) in got
    assert ("Mixed", "rollbackRate", ">", 0.1) in got
    assert not any(t[0] == "Repeated" for t in got)
