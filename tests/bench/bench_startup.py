"""Issue 17 pt 4: does each start-up optimisation still pay for itself?

Each variant of tests/bench/startup_variant.py takes one optimisation out; it is launched alternately
with the unchanged program (``as-is``, through the same runner), so a busy moment of the shared machine
hits both, and the figure quoted is the ratio of their medians. Two measures:

- the console's launch to its first complete dashboard on the 1M-event store (the bench_console
  harness: a real process on a 120x40 pty, timed to $GOVCON_BENCH_READY_FILE);
- `govcon status` as a whole process on the same store (the CLI's everyday path);

each as wall time and as the process's CPU time (user + system, from the kernel's accounting of the reaped
child: the launch's figure runs to the quit on q), the second much less sensitive to a loaded machine.

An optimisation stays when taking it out costs at least 5% on one of them (docs/performance.md, "Start-up
optimisations kept or removed"). This benchmark reports; the decision and its figures are in the docs.

Run: .venv/bin/python -m pytest -q -s tests/bench/bench_startup.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.bench_console import ConsoleStore, PtyProcess, _env, console_store  # noqa: F401 (fixture)
from tests.bench.figures import ms, p50, report

VARIANT = Path(__file__).with_name("startup_variant.py")
RUNS = 7
TAKEN_OUT = ("no-gc-pause", "eager-imports")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _launch(variant: str, store: ConsoleStore, ready: Path) -> tuple[float, float]:
    """(seconds to the first complete dashboard, CPU seconds of the whole process: launch to quit on q)."""
    cpu = _children_cpu()
    with PtyProcess([sys.executable, str(VARIANT), variant], _env(store, ready), ready) as proc:
        wall = proc.wait_ready()
    return wall, _children_cpu() - cpu


def _status(variant: str, store: ConsoleStore, ready: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `govcon status` process."""
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, str(VARIANT), variant, "status"], env=_env(store, ready),
                          capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, f"{variant} status exited {done.returncode}: {done.stderr[-2000:]}"
    return elapsed, _children_cpu() - cpu


@pytest.mark.parametrize("measure", [_launch, _status], ids=["launch", "status"])
@pytest.mark.parametrize("variant", TAKEN_OUT)
def test_what_an_optimisation_buys(variant: str, measure, console_store: ConsoleStore, tmp_path):  # noqa: F811
    ready = tmp_path / "ready"
    measure("as-is", console_store, ready)  # untimed: page cache and .pyc files warm for both
    measure(variant, console_store, ready)
    base, without = [], []
    for _ in range(RUNS):
        base.append(measure("as-is", console_store, ready))
        without.append(measure(variant, console_store, ready))
    wall = [w for w, _ in base], [w for w, _ in without]
    cpu = [c for _, c in base], [c for _, c in without]
    report(f"{measure.__name__.strip('_')} without the optimisation '{variant}' vs as-is, "
           f"{console_store.events:,} events (SQLite), alternated, {RUNS} runs each",
           wall_as_is_p50=ms(p50(wall[0])), wall_without_p50=ms(p50(wall[1])),
           wall_ratio=f"{p50(wall[1]) / p50(wall[0]):.3f}x",
           cpu_as_is_p50=ms(p50(cpu[0])), cpu_without_p50=ms(p50(cpu[1])),
           cpu_ratio=f"{p50(cpu[1]) / p50(cpu[0]):.3f}x",
           wall_as_is_runs=", ".join(ms(s) for s in wall[0]), wall_without_runs=", ".join(ms(s) for s in wall[1]))
    assert min(wall[1]) > 0 and min(wall[0]) > 0 and min(cpu[1]) > 0 and min(cpu[0]) > 0
