"""SQLite WAL checkpoints off the request path.

By default SQLite checkpoints inside a writer's COMMIT once the write-ahead log passes 1,000 pages: that one
commit copies the log into the database and syncs it, and takes ~10 ms where a gate allow otherwise takes ~1.4
ms. At 100 allows between checkpoints that was every allow's p99 (measured: p99 12.0 ms with it, 2.4 ms
without: docs/performance.md, "WAL checkpoints off the request path").

So every connection raises its automatic checkpoint to ``CEILING_PAGES`` (a backstop: a store whose
checkpointer has stopped still bounds its log, at 64 MiB) and truncates a log it restarts to ``LIMIT_BYTES``
(``journal_size_limit``), and one daemon thread per process watches the log files of the stores this process
opened: a log longer than ``LIMIT_BYTES`` means more than ~1,000 pages written since the last restart, and
the thread runs a PASSIVE checkpoint on a connection of its own. PASSIVE never waits for readers or writers
and never blocks them: a writer appends to the log while the checkpoint copies the frames before it.
A failed checkpoint (a full disk, a removed file) is logged once per path and tried again on the next look.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

log = logging.getLogger("govcon.store")

#: the log length (bytes) above which the checkpointer runs; SQLite's own default is 1,000 pages
LIMIT_BYTES = 4 * 1024 * 1024
#: each connection's own automatic checkpoint, in pages: only reached when the checkpointer falls behind
CEILING_PAGES = 16_384
#: seconds between looks at the log files
INTERVAL_S = 0.25
#: checkpoint passes per look, at most (see ``check``)
PASSES = 4
#: a log this long (frames) that writers never let restart is restarted by the checkpointer (see ``check``)
RESTART_FRAMES = 4_096
RESTART_WAIT_MS = 20

CONNECT_PRAGMAS = (f"PRAGMA wal_autocheckpoint={CEILING_PAGES}", f"PRAGMA journal_size_limit={LIMIT_BYTES}")


class Checkpointer:
    """Watches SQLite database files (a count per path: several stores may share one) and checkpoints them."""

    def __init__(self, interval: float = INTERVAL_S) -> None:
        self.interval = interval
        self._paths: dict[str, int] = {}
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  #: checkpoints run, for tests and the benchmark's report
        self.restarts = 0  #: of which the checkpointer restarted the log itself (RESTART not busy)

    def watch(self, path: str) -> None:
        with self._lock:
            self._paths[path] = self._paths.get(path, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="govcon-wal-checkpoint", daemon=True)
                self._thread.start()

    def forget(self, path: str) -> None:
        with self._lock:
            left = self._paths.get(path, 0) - 1
            if left > 0:
                self._paths[path] = left
            else:
                self._paths.pop(path, None)
                self._failing.discard(path)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                paths = list(self._paths)
            for path in paths:
                self.check(path)

    def check(self, path: str) -> bool:
        """Checkpoint ``path`` if its log is past ``LIMIT_BYTES``; True when a checkpoint ran."""
        try:
            if os.stat(path + "-wal").st_size <= LIMIT_BYTES:
                return False
        except OSError:  # no log (the store is closed, or gone)
            return False
        try:
            # mode=rw: never create a database that a test or an operator has just removed
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=0.1, check_same_thread=False)
            try:
                # a pass copies the frames there were when it began, while writers append more; the next writer
                # restarts the log from its start only if every frame is copied by then. So pass again while
                # frames came during the pass before (each such pass copies only those: short)
                seen = -1
                for _ in range(PASSES):
                    _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames == seen or copied < frames:
                        break
                    seen = frames
                if frames >= RESTART_FRAMES:
                    # writers never paused long enough for a restart: take it, waiting at most RESTART_WAIT_MS
                    # for the writer lock. Almost every frame is copied already, so writers wait for a few
                    # frames' copy and one sync, once per RESTART_FRAMES
                    conn.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
                    busy = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
                    if not busy:  # busy: a writer or a reader outlasted the wait; tried again at the next look
                        self.restarts += 1
            finally:
                conn.close()
        except sqlite3.Error as exc:
            if path not in self._failing:
                self._failing.add(path)
                log.warning("WAL checkpoint of %s failed (tried again every %.2f s): %s", path, self.interval, exc)
            return False
        self._failing.discard(path)
        self.checkpoints += 1
        return True


#: the process's one checkpointer
CHECKPOINTER = Checkpointer()
