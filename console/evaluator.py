"""Breaker evaluation for the HTTP server, coalesced: ingest pokes, one thread judges.

`govcon ingest` judges the rules after every batch. A server taking 2,000 requests a second must not
judge 2,000 times a second, so here every ingest only pokes this thread, which runs
``gov.breakers.evaluate()`` at most once per ``min_interval``, and busy for at most a tenth of the time:
an evaluation holds the GIL that request handling needs, so a slow one stretches the interval. Events
acknowledged before a poke are judged by the evaluation after it, within about ``min_interval`` (or nine
evaluation times) plus one evaluation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("govcon.serve.breakers")


class CoalescingEvaluator:
    def __init__(self, evaluate: Callable[[], object], *, min_interval: float = 0.02,
                 on_evaluated: Callable[[float], None] | None = None) -> None:
        self._evaluate = evaluate
        self.min_interval = min_interval
        self._on_evaluated = on_evaluated
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.evaluations = 0

    def poke(self, *_ignored: object) -> None:
        """Called after every committed ingest batch (an Ingestor listener)."""
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, name="govcon-breaker-evaluator", daemon=True)
        self._thread.start()

    def stop(self, *, final: bool = True) -> None:
        """Stop the thread; with ``final`` judge once more, so nothing acknowledged goes unjudged."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if final:
            self._run_once()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            took = self._run_once()
            time.sleep(max(self.min_interval - took, 9 * took))  # period >= min_interval, busy <= 1/10

    def _run_once(self) -> float:
        start = time.perf_counter()
        try:
            self._evaluate()
        except Exception:  # the store may be down for a moment; the scheduler's tick judges again
            log.exception("breaker evaluation failed")
        took = time.perf_counter() - start
        self.evaluations += 1
        if self._on_evaluated is not None:
            self._on_evaluated(took)
        return took
