"""Writers of one SQLite file in this process, let in one at a time and in the order they came.

SQLite lets one writer in at a time (``BEGIN IMMEDIATE``); the others wait in its busy handler, which sleeps
1, 2, 5, 10 … ms between tries, however soon the writer ahead of them commits: a writer behind a 12 ms
transaction came in 6.3 ms (median) after its commit, and one behind a thread writing back to back (a kill switch
engage) found the file taken at almost every try and failed after the 10 s timeout (docs/performance.md,
eighteenth session). So the writers of this process queue here first and are woken the moment the one ahead
ends; only writers of other processes still meet the busy handler.

The queue is fair (first come, first in): a thread that writes in a loop (a prune's batches, ingest's group
commits) cannot take the file again ahead of a kill switch that was waiting. It is reentrant per thread, as a
nested write was before (SQLite then refused it; it still does). A wait ends after ``timeout`` seconds, as
the busy handler's did: the caller fails (StoreUnavailable), it never hangs.
"""

from __future__ import annotations

import threading
from collections import deque


class WriterQueue:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._waiting: deque[tuple[int, threading.Lock]] = deque()

    def acquire(self, timeout: float) -> bool:
        """Wait for this thread's turn, at most ``timeout`` seconds; False when it did not come."""
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._waiting:
                self._owner, self._depth = me, 1
                return True
            turn = threading.Lock()
            turn.acquire()
            entry = (me, turn)
            self._waiting.append(entry)
        try:
            if turn.acquire(timeout=timeout):
                return True  # ``release`` made this thread the owner
        except BaseException:  # interrupted (a signal handler raised): leave no place, and no turn, behind
            with self._mutex:
                if self._owner != me:
                    self._waiting.remove(entry)
                    raise
            self.release()  # it had been handed over meanwhile: on to the next
            raise
        with self._mutex:
            if self._owner == me:  # handed over as the wait ran out
                return True
            self._waiting.remove(entry)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("the SQLite writer queue released by a thread that is not its writer")
            self._depth -= 1
            if self._depth:
                return
            if self._waiting:
                self._owner, turn = self._waiting.popleft()
                self._depth = 1
                turn.release()
            else:
                self._owner = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)


_QUEUES: dict[str, WriterQueue] = {}
_QUEUES_LOCK = threading.Lock()


def for_file(path: str) -> WriterQueue:
    """The queue of the SQLite file ``path`` (one per file and process, shared by all its engines)."""
    queue = _QUEUES.get(path)
    if queue is None:
        with _QUEUES_LOCK:
            queue = _QUEUES.setdefault(path, WriterQueue())
    return queue
