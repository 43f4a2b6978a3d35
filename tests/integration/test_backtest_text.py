"""`govcon rules backtest` prints text an operator reads — each trip's observed values as `errorRate
7.14%, samples 42`, not a Python dict — and counts in words that agree (issue 15). On both stores."""

from __future__ import annotations

from datetime import timedelta

from engine.clock import isoformat
from tests.integration.test_breakers import cmd, commands


def test_backtest_text_names_the_observed_values_without_a_dict(gov, cli, clock):
    base = clock.now() - timedelta(days=3)
    history = [cmd(h * 100 + i, "succeeded", base + timedelta(hours=h, minutes=i * 3), prefix="q")
               for h in range(48) for i in range(20)]
    burst = base + timedelta(hours=30, minutes=1, seconds=17)
    history += commands(20, 8, burst, prefix="burst")
    history.append({"kind": "incident", "id": "inc-burst", "severity": "high",
                    "at": isoformat(burst + timedelta(minutes=4))})
    gov.ingestor.ingest_objects(history)
    r = cli("rules", "backtest", "--condition", "errorRate > 0.05", "--window", "5m", "--days", "4")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[1] == "would have tripped once: 1 with an incident nearby, 0 without"
    trip = lines[2]
    assert "{" not in r.out and "'" not in trip, r.out
    assert "errorRate " in trip and "%" in trip and "[inc-burst (high)]" in trip, trip
    none = cli("rules", "backtest", "--condition", "errorRate > 0.9", "--window", "5m", "--days", "4")
    assert "would have tripped 0 times" in none.out
