"""SQLite WAL checkpoints off the request path.

By default SQLite checkpoints inside a writer's COMMIT once the write-ahead log passes 1,000 pages: that one
commit copies the log into the database and syncs it, and takes ~10 ms where a gate allow otherwise takes ~1.4
ms. At 100 allows between checkpoints that was every allow's p99 (measured: p99 12.0 ms with it, 2.4 ms
without: docs/performance.md, "WAL checkpoints off the request path").

So every connection raises its automatic checkpoint to ``CEILING_PAGES`` (a backstop: a store whose
checkpointer has stopped still bounds its log, at 64 MiB), and one daemon thread per process watches the
stores this process opened: when more than ``LIMIT_FRAMES`` pages (4 MiB) were written to a log and not yet
copied into the database, the thread runs a PASSIVE checkpoint on a connection of its own. PASSIVE never
waits for readers or writers and never blocks them: a writer appends to the log while the checkpoint copies
the frames before it. A failed checkpoint (a full disk, a removed file) is logged once per path and tried
again on the next look.

A restarted log keeps its file, up to ``KEEP_BYTES`` (``journal_size_limit``): writers then overwrite blocks
the file already has instead of appending new ones. Appending allocates blocks, which on ext4 waits for the
filesystem's journal, and the checkpoint's sync of the database commits that journal: with the log cut back
to 4 MiB at every restart, allows at 500/s over the socket stalled 10-25 ms whenever the two met (p99 4.1-11
ms; kept: 2.3-3.5 ms, on tmpfs 2.1-2.3 ms: docs/performance.md, "Sixteenth session"). Since the file's size
no longer says how much is waiting, the thread counts the frames written since the log restarted (``log_frames``)
and takes away those its last checkpoint of the same cycle copied.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading
import time

log = logging.getLogger("govcon.store")

#: pages waiting in the log (written, not yet copied) above which the checkpointer runs; SQLite's own default
#: is 1,000 pages
LIMIT_FRAMES = 1_024
#: the log length (bytes) above which the checkpointer runs where it cannot read the log's header
LIMIT_BYTES = 4 * 1024 * 1024
#: each connection's own automatic checkpoint, in pages: only reached when the checkpointer falls behind
CEILING_PAGES = 16_384
#: the size a restarted log's file is cut back to when it is longer (``journal_size_limit``)
KEEP_BYTES = CEILING_PAGES * 4096
#: seconds between looks at the log files
INTERVAL_S = 0.25
#: checkpoint passes per look, at most (see ``check``)
PASSES = 4
#: a log this long (frames) that writers never let restart is restarted by the checkpointer (see ``check``)
RESTART_FRAMES = 4_096
RESTART_WAIT_MS = 20

CONNECT_PRAGMAS = (f"PRAGMA wal_autocheckpoint={CEILING_PAGES}", f"PRAGMA journal_size_limit={KEEP_BYTES}")

#: the log file's header (https://www.sqlite.org/walformat.html, big-endian): magic, format, page size,
#: checkpoint sequence, salt-1, salt-2 (then two checksums: 32 bytes); each frame's header (24 bytes) repeats the
#: salts at its byte 8
_WAL_HEADER = struct.Struct(">IIIIII")
_WAL_HEADER_BYTES = 32
_FRAME_HEADER = 24
_SALTS = struct.Struct(">II")


def log_frames(path: str) -> tuple[tuple[int, int], int] | None:
    """(the log's salts, the frames written to it since it last restarted), read from the ``-wal`` file without
    a lock: a heuristic (a torn read moves a checkpoint one look earlier or later). A restart writes a new header
    with new salts and its frames from the file's start, over those of earlier cycles: the frames of this cycle
    are the prefix whose salts are the header's, found by bisection. None when there is no log header.

    Never the ``-shm`` file, although its header holds both counts: closing any descriptor of a file drops every
    POSIX lock this process holds on it, and SQLite's connections in this process lock the ``-shm`` file (with
    it read that way, two processes approving one proposal each took the write lock: a lost approval)."""
    try:
        fd = os.open(path + "-wal", os.O_RDONLY)
    except OSError:
        return None
    try:
        header = os.pread(fd, _WAL_HEADER.size, 0)
        if len(header) < _WAL_HEADER.size:
            return None
        _magic, _format, page_size, _seq, salt1, salt2 = _WAL_HEADER.unpack(header)
        if page_size < 512:
            return None
        frame = page_size + _FRAME_HEADER
        salts = (salt1, salt2)
        good, bad = 0, (os.fstat(fd).st_size - _WAL_HEADER_BYTES) // frame + 1  # frames [0, good) are this cycle's
        while bad - good > 1:
            mid = (good + bad) // 2  # frame bad - 1 is not (or does not exist): is frame mid - 1?
            raw = os.pread(fd, _SALTS.size, _WAL_HEADER_BYTES + (mid - 1) * frame + 8)
            if len(raw) == _SALTS.size and _SALTS.unpack(raw) == salts:
                good = mid
            else:
                bad = mid
        return salts, good
    except OSError:
        return None
    finally:
        os.close(fd)


class Checkpointer:
    """Watches SQLite database files (a count per path: several stores may share one) and checkpoints them."""

    def __init__(self, interval: float = INTERVAL_S) -> None:
        self.interval = interval
        self._paths: dict[str, int] = {}
        self._failing: set[str] = set()
        #: path -> (the log's salts, the frames of it copied) at this checkpointer's last checkpoint of it
        self._copied: dict[str, tuple[tuple[int, int], int]] = {}
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
                self._copied.pop(path, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                paths = list(self._paths)
            for path in paths:
                self.check(path)

    def check(self, path: str) -> bool:
        """Checkpoint ``path`` if more than ``LIMIT_FRAMES`` pages wait in its log (or the log has not restarted
        for ``RESTART_FRAMES``); True when a checkpoint ran."""
        log_now = log_frames(path)
        if log_now is not None:
            salts, written = log_now
            seen_salts, copied = self._copied.get(path, (None, 0))
            waiting = written - copied if seen_salts == salts else written  # another cycle: nothing of it copied
            if waiting <= LIMIT_FRAMES and written < RESTART_FRAMES:
                return False
        else:
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
                if log_now is not None:  # the frames of this cycle copied (if it is still the one read above)
                    self._copied[path] = (log_now[0], copied)
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
