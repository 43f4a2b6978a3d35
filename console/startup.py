"""Python's cyclic garbage collector, paused while govcon starts.

Importing govcon (Textual, SQLAlchemy, the engine) and building the console's first screen create about
100,000 long-lived objects; with the collector on, full collections over them land inside the launch
(20-70 ms each, measured: docs/performance.md). The entry point (``console/__main__.py``) pauses it
before importing anything heavy; ``resume`` then collects once, freezes what survived (``gc.freeze``:
those objects are never scanned again, so later full collections stay short) and switches the
collector back on. The CLI resumes right after parsing its arguments for every command but the console
(the demo too: it builds its scratch store first), which resumes once its first dashboard is on the
screen (or two seconds after mount at the latest); only the long-running ones (the console, `serve`)
collect before freezing.
Reference counting frees everything else meanwhile. What it buys, measured with it taken out
(tests/bench/bench_startup.py, docs/performance.md "Start-up optimisations kept or removed"): about 0.38 s
of CPU at the console's launch on a 1M-event store (1.27x without) and 0.15 s per CLI command (1.31x).
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    global _paused
    _paused = True
    gc.disable()


def resume(*, collect: bool = True) -> None:
    """Collect, freeze and re-enable; nothing unless ``pause`` was called (tests and programs that embed
    govcon keep their own collector settings). ``collect=False`` freezes without the full collection: a
    one-shot command ends in a fraction of a second, and collecting ~55,000 objects to free the ~1,500
    that are garbage cost it 30 ms of its ~300 (a tenth of `govcon gate`); what it leaves is freed at exit."""
    global _paused
    if not _paused:
        return
    _paused = False
    if collect:
        gc.collect()
    gc.freeze()
    gc.enable()


def paused() -> bool:
    return _paused
