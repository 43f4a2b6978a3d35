"""Read ahead: run a long, chunked read on its own connection in a thread while the caller works on the
chunks already read. The database does its part (SQLite and psycopg release the GIL while a statement
runs) at the same time as the caller's Python, and at most ``depth`` chunks wait in between, so memory
stays bounded by the chunks, not by the read."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

from sqlalchemy.engine import Connection

from storage.store import Store

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(store: Store, produce: Callable[[Connection], Iterator[T]], *, depth: int = 4,
               name: str = "read-ahead") -> Generator[T, None, None]:
    """The items of ``produce(conn)``, read in a thread on a read transaction of its own (the caller's
    lane: the context is copied). An error in the thread is raised here; closing the iterator early stops
    the thread after at most the chunk it is reading."""
    chunks: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            with store.read() as conn:
                for item in produce(conn):
                    if not put(item):
                        return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 — handed to the consumer, which raises it
            put(_Failed(exc))

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(work,), name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
