"""The collector's pauses during a latency bound, the test worker's heap out of its sight, and the engages
those tests time while maintenance runs (``engages_while``).

A test worker has run hundreds of tests before a latency test, and their objects are still in its heap; a
govcon process never carries another test's objects and freezes what it holds after start-up
(console/startup.py). So the engage-during-maintenance tests freeze the worker's heap first, the same way, and
report the collections that still ran. A precaution, not a proven cause: one fresh-clone run saw a 2.29 s
engage during the PostgreSQL prune (bound 1 s) that did not come back alone, beside four CPU burners, or with a
3-million-object heap loaded first; if it comes back, the failure now says whether a collection was in it.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def frozen_heap() -> Iterator[list[tuple[int, float]]]:
    """Freeze what the process holds now; yields the (generation, seconds) of each collection meanwhile."""
    pauses: list[tuple[int, float]] = []
    began: list[float] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            began.append(time.perf_counter())
        elif began:
            pauses.append((info["generation"], time.perf_counter() - began.pop()))

    gc.collect()
    gc.freeze()
    gc.callbacks.append(note)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(note)
        gc.unfreeze()


def slowest(pauses: list[tuple[int, float]], n: int = 3) -> str:
    worst = sorted(pauses, key=lambda p: -p[1])[:n]
    return ", ".join(f"gen {g} {s * 1000:.0f} ms" for g, s in worst) or "none"


def engages_while(worker: threading.Thread, operator: Any, actor: str, what: str, *, rounds: int,
                  join_s: float) -> list[float]:
    """Engage and release the kill switch (``operator``: a Governance on its own store) until ``worker`` ends
    or ``rounds`` engages ran, each asserted to land in the store (not the marker file's fallback); then wait
    ``join_s`` for the worker and close ``operator``. The seconds each engage took."""
    latencies: list[float] = []
    try:
        while worker.is_alive() and len(latencies) < rounds:
            t0 = time.perf_counter()
            result = operator.overrides.kill_switch("engage", actor, f"during the {what} #{len(latencies)}")
            latencies.append(time.perf_counter() - t0)
            assert result.changed and result.via == "store", result  # in the store, not the marker fallback
            operator.overrides.kill_switch("release", actor, "next round")
            time.sleep(0.05)
        worker.join(join_s)
    finally:
        operator.close()
    return latencies
