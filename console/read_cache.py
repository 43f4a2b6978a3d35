"""The API's expensive open reads, cached briefly and computed off the request path.

``GET /api/governance/state`` and ``/api/readiness/*`` assessed readiness on every call (1.8 s on a 2M-event
store), so a handful of pollers kept every thread and connection busy. Here each document is computed by
one thread of its own, at most one computation at a time, and every request waiting meanwhile shares it:
a thousand pollers cost one computation per period, and no request thread at all (the routes await).

- The state document is fresh to within ``state_seconds``; any change made through this server
  (``invalidate``: every POST/PATCH, every breaker evaluation) makes the next read wait for a new one.
- Readiness is served stale-while-revalidate: a report older than ``readiness_seconds`` is still answered
  (while a new one is computed in the background) for up to ``readiness_max_stale`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Cached(Generic[T]):
    """One value, recomputed by ``compute`` on a thread of its own; asyncio callers only."""

    def __init__(self, compute: Callable[[], T], *, seconds: float, max_stale: float, name: str) -> None:
        self.compute = compute
        self.seconds = seconds
        self.max_stale = max(max_stale, seconds)
        self._name = name
        self._executor: ThreadPoolExecutor | None = None  # made on first use, again after close (an app restarted)
        self._generation = 0  # bumped by invalidate (from any thread)
        self._lock = threading.Lock()
        self._value: T | None = None
        self._value_generation = -1
        self._value_at = 0.0
        self._inflight: asyncio.Future | None = None

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1

    async def get(self) -> T:
        if self.seconds <= 0:
            return await asyncio.get_running_loop().run_in_executor(self._pool(), self.compute)
        needed = self._generation  # a value computed from a start at or after this sees every change so far
        while True:
            if self._value_generation >= needed and self._value_generation >= 0:
                age = time.monotonic() - self._value_at
                if age < self.seconds:
                    return self._value  # type: ignore[return-value]
                if age < self.max_stale and self._value_generation == self._generation:
                    self._refresh()
                    return self._value  # type: ignore[return-value]
            await asyncio.shield(self._refresh())

    def _refresh(self) -> asyncio.Future:
        if self._inflight is not None and not self._inflight.done():
            return self._inflight
        loop = asyncio.get_running_loop()
        generation = self._generation
        inflight = loop.run_in_executor(self._pool(), self.compute)

        def done(f: asyncio.Future) -> None:
            if not f.cancelled() and f.exception() is None:
                self._value, self._value_generation, self._value_at = f.result(), generation, time.monotonic()

        inflight.add_done_callback(done)
        self._inflight = inflight
        return inflight

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"govcon-{self._name}")
        return self._executor

    def close(self) -> None:
        """Stop the thread; a later ``get`` (the app started again: lifespan runs once per start) makes a new one."""
        executor, self._executor, self._inflight = self._executor, None, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, default=str).encode()


class ReadCache:
    def __init__(self, gov, *, state_seconds: float = 1.0, readiness_seconds: float = 2.0,
                 readiness_max_stale: float = 30.0) -> None:
        self.gov = gov
        self._readiness = _Cached(gov.readiness.assess, seconds=readiness_seconds, max_stale=readiness_max_stale,
                                  name="readiness")
        self._state = _Cached(lambda: gov.status(with_readiness=False), seconds=state_seconds,
                              max_stale=state_seconds, name="state")
        # (identity of the cached value(s), their JSON); the cached values are kept alive by the caches,
        # so an id is not reused while it is compared
        self._state_body: tuple[Any, bytes] = (None, b"")
        self._readiness_body: tuple[Any, bytes] = (None, b"")

    async def readiness(self):
        return await self._readiness.get()

    async def state(self) -> dict[str, Any]:
        """As ``gov.status()``: the readiness score from the readiness cache."""
        doc, report = await asyncio.gather(self._state.get(), self._readiness.get())
        return {**doc, "readinessScore": round(report.score, 4)}

    async def state_body(self) -> bytes:
        """The state document as JSON, encoded once per pair of cached values (a hit costs no encoding)."""
        doc, report = await asyncio.gather(self._state.get(), self._readiness.get())
        key = (id(doc), id(report))
        if self._state_body[0] != key:
            self._state_body = (key, _encode({**doc, "readinessScore": round(report.score, 4)}))
        return self._state_body[1]

    async def readiness_body(self) -> bytes:
        report = await self._readiness.get()
        if self._readiness_body[0] != id(report):
            self._readiness_body = (id(report), _encode(report.to_json()))
        return self._readiness_body[1]

    def invalidate(self, *, readiness: bool = True) -> None:
        self._state.invalidate()
        if readiness:
            self._readiness.invalidate()

    def close(self) -> None:
        self._state.close()
        self._readiness.close()
