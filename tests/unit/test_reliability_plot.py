"""The console's reliability plot (issue 14 pt 5): per bin, stated against observed with the count, from
the engine's own calibration (engine/calibration.calibrate, hand-computable outcomes)."""

from engine.calibration import calibrate
from screens.action_view import reliability_text


def test_stated_against_observed_per_bin_with_counts():
    # 20 outcomes stated 0.9: 18 succeeded (observed 0.90); 4 stated 0.55: 1 succeeded (0.25, too few)
    outcomes = [(0.9, i < 18) for i in range(20)] + [(0.55, i < 1) for i in range(4)]
    cal = calibrate("rollback-bot", None, outcomes).to_json()
    text = reliability_text(cal, width=20).plain
    lines = text.splitlines()
    assert lines[0].startswith("Calibration (stated vs observed, 24 outcomes · Brier ")
    row = next(i for i, line in enumerate(lines) if line.startswith("0.9–1.0"))
    assert lines[row].count("░") == 18 and lines[row].rstrip().endswith("0.90")
    assert lines[row + 1].count("█") == 18 and " 0.90" in lines[row + 1] and lines[row + 1].rstrip().endswith("20")
    low = next(i for i, line in enumerate(lines) if line.startswith("0.5–0.6"))
    assert lines[low + 1].count("█") == 5 and "4  too few: stated used" in lines[low + 1]
    empty = next(line for line in lines if line.startswith("0.0–0.1"))
    assert empty.split()[-1] == "0" and "█" not in empty  # an empty bin: no figure, not a zero bar


def test_no_outcomes_says_the_stated_confidence_is_used():
    text = reliability_text(calibrate("new-bot", None, []).to_json()).plain
    assert "0 outcomes · Brier – · ECE –" in text and "the gate uses the stated confidence" in text
    assert reliability_text(None).plain == "calibration: reading…"
