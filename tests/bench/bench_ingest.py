"""Issue 2, "Speed": `govcon ingest` of 200,000 command events (JSON Lines) takes at most 3x the
least a Python ingester can do (tests/bench/baseline_ingest.py), measured in the same run.

Both run end to end as processes, into fresh SQLite files, alternating, ROUNDS times each; the figure
is the ratio of the medians. Our ingest is also timed in-process (Ingestor.ingest_lines) to show how
much of the CLI's time is process start-up (imports, opening and migrating the store).

Run: make bench   (or .venv/bin/python -m pytest -q -s tests/bench/bench_ingest.py)
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine import ingest
from engine.clock import SystemClock
from engine.ingest import Ingestor
from engine.simulator import generate_history
from storage.store import Store
from tests.bench.conftest import END
from tests.bench.figures import p50, report, timed

EVENTS = 200_000
TARGET_RATIO = 3.0
ROUNDS = 5
ROOT = Path(__file__).resolve().parents[2]
BASELINE = Path(__file__).with_name("baseline_ingest.py")


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    """200,000 command events from the simulator (about 65,000 commands' lifecycles), one per line."""
    path = tmp_path_factory.mktemp("ingest") / "commands.jsonl"
    commands = (e for e in generate_history(END - timedelta(days=60), END, seed=2) if e["kind"] == "command")
    with path.open("w") as f:
        for event in itertools.islice(commands, EVENTS):
            f.write(json.dumps(event) + "\n")
    assert sum(1 for _ in path.open()) == EVENTS
    return path


def _env(tmp: Path, db: Path) -> dict[str, str]:
    env = dict(os.environ, GOVCON_DATABASE_URL=str(db), GOVCON_CONFIG=str(tmp / "absent.toml"),
               XDG_DATA_HOME=str(tmp / "data"), XDG_CONFIG_HOME=str(tmp / "config"))
    env.pop("GOVCON_TEST_POSTGRES_URL", None)
    return env


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def _timed_run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, its stdout): CPU time shows what a busy machine hides."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, out = timed(lambda: _run(args, env))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), out


def _stored(db: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM command_events")).scalar_one()
    finally:
        engine.dispose()


def test_cli_ingest_within_3x_of_the_plain_python_baseline(events_file: Path, tmp_path: Path):
    ours, baseline = [], []  # (wall, cpu) per round
    for i in range(ROUNDS):
        base_db = tmp_path / f"baseline-{i}.db"
        wall, cpu, out = _timed_run([str(BASELINE), str(events_file), str(base_db)], _env(tmp_path, base_db))
        assert int(out) == EVENTS
        baseline.append((wall, cpu))

        db = tmp_path / f"govcon-{i}.db"
        env = _env(tmp_path, db)
        _run(["-m", "console", "db", "init"], env)  # untimed: a store exists before anyone ingests
        wall, cpu, out = _timed_run(["-m", "console", "ingest", "--json", str(events_file)], env)
        assert json.loads(out)["accepted"] == EVENTS and _stored(db) == EVENTS
        ours.append((wall, cpu))

    startup_wall, startup_cpu, _ = _timed_run(["-m", "console", "--help"], _env(tmp_path, tmp_path / "unused.db"))
    ratio = p50([w for w, _ in ours]) / p50([w for w, _ in baseline])
    cpu_ratio = p50([c for _, c in ours]) / p50([c for _, c in baseline])
    report(f"govcon ingest of {EVENTS:,} command events vs plain json + executemany (SQLite, WAL)",
           target=f"ours <= {TARGET_RATIO:.0f}x baseline (wall clock, medians of {ROUNDS} alternating runs)",
           govcon_ingest=_figures(ours), baseline=_figures(baseline),
           ratio=f"{ratio:.2f}x wall, {cpu_ratio:.2f}x CPU",
           govcon_rate=f"{EVENTS / p50([w for w, _ in ours]):,.0f} events/s",
           cli_startup=f"{startup_wall:.2f} s wall, {startup_cpu:.2f} s CPU (`python -m console --help`)",
           json_decoder=_decoder())
    assert ratio <= TARGET_RATIO


def _decoder() -> str:
    if ingest.orjson is None:
        return "json module (install orjson for the faster decoder)"
    return f"orjson {ingest.orjson.__version__}, json module for the lines it declines"


def _figures(samples: list[tuple[float, float]]) -> str:
    walls = ", ".join(f"{w:.2f}" for w, _ in samples)
    return (f"p50 {p50([w for w, _ in samples]):.2f} s wall ({walls}), "
            f"p50 {p50([c for _, c in samples]):.2f} s CPU")


def test_in_process_ingest(events_file: Path, tmp_path: Path):
    """Ingestor.ingest_lines alone: the CLI's time without interpreter start-up and imports."""
    samples = []
    for i in range(ROUNDS):
        store = Store(str(tmp_path / f"inproc-{i}.db"))
        try:
            with events_file.open("rb") as f:  # as the CLI reads it
                cpu = time.process_time()
                seconds, result = timed(lambda: Ingestor(store, SystemClock()).ingest_lines(f))
                cpu = time.process_time() - cpu
        finally:
            store.dispose()
        assert result.accepted == EVENTS and result.rejected == 0
        samples.append((seconds, cpu))
    report(f"Ingestor.ingest_lines of {EVENTS:,} command events, in-process (SQLite)",
           ingest_lines=_figures(samples),
           rate=f"{EVENTS / p50([w for w, _ in samples]):,.0f} events/s", json_decoder=_decoder())
