"""Helpers for the benchmarks: timing, the machine they ran on, and one printed line per figure."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def runs(fn: Callable[[], Any], n: int, *, warmup: int = 1) -> list[float]:
    """Seconds of ``n`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn)[0] for _ in range(n)]


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> str:
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        return "unknown"


def machine() -> str:
    return (f"nproc {os.cpu_count()}, CPU {_cpu_model()}, RAM {_ram_gib()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def report(title: str, **figures: Any) -> None:
    """One block per benchmark on stdout (run with -s): what was measured, then each figure."""
    print(f"\n=== {title}")
    for name, value in figures.items():
        print(f"    {name:<28} {value}")
    print(f"    {'machine':<28} {machine()}")
