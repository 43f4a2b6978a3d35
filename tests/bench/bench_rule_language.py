"""Issue 17 pt 8: the rule language's tree walks as ``match`` statements cost no more than the isinstance
chains they replaced where it matters: a condition's evaluation inside a backtest step (the hottest caller).

Run: .venv/bin/python -m pytest -q -s tests/bench/bench_rule_language.py
The baseline is the rule language before the change (commit 1b6986c), read from git and loaded beside the
current one, so both are measured in the same run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import timeit
from pathlib import Path
from types import ModuleType

from engine import backtest, rule_language
from engine.backtest import Backtester
from tests.bench.figures import report

BASELINE_COMMIT = "1b6986c"
CONDITIONS = ("errorRate > 0.05", "commandType.failures >= 3", 'incident.severity === "critical"',
              "rollbackRate > 0.1 and not (incidents.critical >= 1)")
VALUES = {"errorRate": 0.03, "commandType.failed": 2, "rollbackRate": 0.2, "incidents.critical": 0}


def _baseline(tmp_path: Path) -> ModuleType:
    root = Path(__file__).resolve().parents[2]
    text = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:engine/rule_language.py"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    path = tmp_path / "rule_language_baseline.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("rule_language_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _best_us(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def test_evaluate_match_against_isinstance_chains(tmp_path: Path):
    old = _baseline(tmp_path)
    sums = backtest._WindowSums()  # a window of four types, autonomous and not
    sums.apply([(0, t, (30, 30, 28, 0, 25, 2, 1), (30, 30, 28, 0, 25, 2, 1) if a else None)
                for t in ("restart_service", "scale_up", "clear_cache", "rotate_logs") for a in (True, False)], 1)
    backtester = Backtester.__new__(Backtester)  # _judge reads nothing of the instance
    for text in CONDITIONS:
        figures = {}
        for name, module in (("match", rule_language), ("before", old)):  # (the second measured runs warmer)
            condition = module.parse_condition(text)
            scope = module.MappingScope(VALUES, ["high"])
            figures[f"evaluate_{name}"] = _best_us(lambda c=condition, s=scope: c.evaluate(s), 20_000)
            figures[f"step_{name}"] = _best_us(lambda c=condition: backtester._judge(c, backtest._Reads.of(c), sums, [], {}, 10), 1_000)
            assert condition.evaluate(scope) == old.parse_condition(text).evaluate(old.MappingScope(VALUES, ["high"]))
        report(f"rule language {text!r}",
               evaluate=f"{figures['evaluate_match']:.2f} us vs {figures['evaluate_before']:.2f} us before "
                        f"({figures['evaluate_match'] / figures['evaluate_before']:.2f}x)",
               backtest_step=f"{figures['step_match']:.1f} us vs {figures['step_before']:.1f} us before "
                             f"({figures['step_match'] / figures['step_before']:.2f}x)")
