"""Issue 12 pt 4 (durability of a grant): the physical floor of one INSERT+COMMIT on this disk, SQLite in WAL mode,
with synchronous=NORMAL (govcon's setting: a commit is not fsynced; a power loss may forget the newest commits,
never corrupt the file) against synchronous=FULL (each commit fsyncs the WAL: a grant, once answered, survives a
power loss). If FULL's p99 alone exceeds the 2 ms bar, a durable grant cannot meet that bar on this hardware.

Run: .venv/bin/python -m pytest -q -s tests/bench/bench_gate_durable_floor.py   (or run the file with python)
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

N = 2000


def floor(path: Path, synchronous: str, n: int = N) -> list[float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, at TEXT, body TEXT)")
    out = []
    for i in range(n + 100):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (at, body) VALUES (?, ?)", ("2026-12-06T17:00:00", "x" * 200))
        conn.execute("COMMIT")
        if i >= 100:
            out.append(time.perf_counter() - start)
    conn.close()
    return out


def figures() -> dict[str, str]:
    here = Path(os.environ.get("GOVCON_BENCH_DIR") or tempfile.mkdtemp(prefix="govcon-durable-"))
    out = {}
    for mode in ("NORMAL", "FULL"):
        samples = floor(here / f"floor-{mode}.db", mode)
        q = statistics.quantiles(samples, n=100)
        out[mode] = f"p50 {statistics.median(samples) * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms"
    out["disk"] = str(here)
    out["load_average"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return out


def test_durable_floor():
    found = figures()
    for k, v in found.items():
        print(f"  {k}: {v}")
    assert "FULL" in found


if __name__ == "__main__":
    for key, value in figures().items():
        print(f"{key}: {value}", file=sys.stdout)
