"""Threads of their own for the API's safety paths: the gate, the kill switch, revert, ingest and /health.

Starlette runs plain ``def`` endpoints in anyio's shared threadpool (40 threads). When slow reads fill it,
everything else queues behind them — a kill switch waited 73 s behind readers. ``run_safety`` runs a
call on a small executor that reads never use, inside ``use_lane("safety")`` so that its store calls
take the safety lane's own connections too (storage/store.py). ``safety_route`` does the same for a
whole endpoint: put it under the ``@app.post(...)`` line of a plain ``def`` endpoint.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from storage.store import use_lane

T = TypeVar("T")

#: threads for safety calls; more than the safety lane's connections (3+2), so a caller waiting for a
#: connection fails by the pool's timeout, never by waiting for a thread
SAFETY_THREADS = 8

_executor: ThreadPoolExecutor | None = None


def _safety_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(SAFETY_THREADS, thread_name_prefix="govcon-safety")
    return _executor


def _in_lane(lane: str, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    with use_lane(lane):
        return fn(*args, **kwargs)


async def run_safety(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the safety executor, its store calls on the safety lane."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_safety_executor(), _in_lane, "safety", fn, args, kwargs)


def safety_route(endpoint: Callable[..., T]) -> Callable[..., Any]:
    """A plain endpoint run by ``run_safety`` instead of the shared threadpool (same signature, so
    FastAPI sees the same parameters)."""
    @functools.wraps(endpoint)
    async def run(*args: Any, **kwargs: Any) -> T:
        return await run_safety(endpoint, *args, **kwargs)
    return run
