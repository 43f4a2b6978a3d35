"""The safety lane's deadline: 1.5 s unless $GOVCON_SAFETY_DEADLINE says otherwise, within bounds; a bad
value is refused naming the variable, and the lane's other timeouts keep their proportions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.db import SAFETY_DEADLINE_ENV, safety_deadline_from, safety_lane
from storage.store import Store

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_is_the_documented_lane():
    lane = safety_lane(safety_deadline_from({}))
    assert (lane.deadline, lane.pool_timeout, lane.statement_timeout_ms, lane.lock_timeout_ms) == (1.5, 1.0, 1500,
                                                                                                    1000)


def test_a_longer_deadline_scales_the_lane():
    lane = safety_lane(safety_deadline_from({SAFETY_DEADLINE_ENV: " 6 "}))
    assert (lane.deadline, lane.pool_timeout, lane.statement_timeout_ms, lane.lock_timeout_ms) == (6.0, 4.0, 6000,
                                                                                                    4000)


@pytest.mark.parametrize("raw", ["abc", "0", "0.1", "31", "nan", "-2", "1.5s", "inf"])
def test_a_bad_value_is_refused_by_name(raw):
    with pytest.raises(ValueError) as refused:
        safety_deadline_from({SAFETY_DEADLINE_ENV: raw})
    assert f"$GOVCON_SAFETY_DEADLINE = {raw!r}" in str(refused.value) and "from 0.5 to 30" in str(refused.value)


def test_a_process_reads_it_at_start_and_a_bad_one_opens_no_store(tmp_path):
    url = str(tmp_path / "g.db")
    Store(url).dispose()
    env = dict(os.environ, GOVCON_SAFETY_DEADLINE="2.5", GOVCON_DATABASE_URL=url)
    code = "from storage.db import LANES; print(LANES['safety'].deadline)"
    read = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert read.stdout.strip() == "2.5", read.stderr
    env[SAFETY_DEADLINE_ENV] = "soon"
    refused = subprocess.run([sys.executable, "-m", "console", "status"], cwd=ROOT, env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 1, refused.stderr[-2000:]  # and the gate fails closed on it
    gate = subprocess.run([sys.executable, "-m", "console", "gate", "restart_service"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert gate.returncode == 4 and gate.stdout.startswith("deny: store unreachable, failing closed: cannot open "
                                                           "the store: $GOVCON_SAFETY_DEADLINE = 'soon'"), gate
    assert refused.stderr.strip() == ("govcon: cannot open the store: $GOVCON_SAFETY_DEADLINE = 'soon': expected a "
                                      "number of seconds from 0.5 to 30"), refused.stderr[-2000:]
