"""Batch ingest of events: validate each, store the good ones idempotently, report the bad ones.

A bad line never stores anything of itself, and never stops the good lines around it. Lines are
stored in batches, one transaction each; a listener (the breaker evaluator) runs after each commit.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from engine.clock import Clock
from engine.events import EventError, parse_event
from storage import events_repo
from storage.store import Store

_INSERTERS = {
    "command": events_repo.insert_command_events,
    "incident": events_repo.insert_incidents,
    "safety": events_repo.insert_safety_events,
    "eval_coverage": events_repo.insert_eval_coverage,
}

MAX_REPORTED_ERRORS = 1000


@dataclass(frozen=True)
class IngestError:
    line: int
    field: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.field}" if self.field else "")
        return f"{where}: {self.message}"


@dataclass
class IngestReport:
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    errors: list[IngestError] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)  # accepted per kind

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicate": self.duplicate, "rejected": self.rejected,
                "errors": [e.to_json() for e in self.errors]}

    def merge(self, other: "IngestReport") -> None:
        self.accepted += other.accepted
        self.duplicate += other.duplicate
        self.rejected += other.rejected
        room = MAX_REPORTED_ERRORS - len(self.errors)
        self.errors.extend(other.errors[:max(room, 0)])
        for k, n in other.kinds.items():
            self.kinds[k] = self.kinds.get(k, 0) + n


BatchListener = Callable[[IngestReport], None]


class Ingestor:
    def __init__(self, store: Store, clock: Clock, *, batch_size: int = 20_000) -> None:
        self.store = store
        self.clock = clock
        self.batch_size = batch_size
        self.listeners: list[BatchListener] = []

    def ingest_lines(self, lines: Iterable[str | bytes], *,
                     progress: Callable[[int], None] | None = None) -> IngestReport:
        """JSON Lines; line numbers in errors count from 1 and include blank lines."""
        report = IngestReport()
        pending: list[tuple[int, Any]] = []
        loads, batch_size = _loads, self.batch_size  # locals: this loop runs once per line
        with _cyclic_gc_paused():
            for number, line in enumerate(lines, start=1):
                if progress is not None:
                    progress(len(line))
                try:
                    pending.append((number, loads(line)))
                except ValueError as exc:  # also undecodable bytes (UnicodeDecodeError)
                    if line.strip():  # blank lines are skipped, not rejected
                        report.merge(_rejection(number, None, f"not valid JSON: {exc}"))
                    continue
                except RecursionError:  # e.g. [[[[…]]]] nested thousands deep
                    report.merge(_rejection(number, None, "not valid JSON: nested too deeply"))
                    continue
                if len(pending) >= batch_size:
                    report.merge(self._store_batch(pending))
                    pending = []
            if pending:
                report.merge(self._store_batch(pending))
        report.errors.sort(key=lambda e: e.line)  # JSON errors are found before a batch's field errors
        return report

    def ingest_objects(self, objects: Iterable[Any]) -> IngestReport:
        """Already decoded events (the HTTP API, the demo's history); ``line`` in errors is the item's
        1-based index. Streams: a generator of any length is stored batch by batch."""
        report = IngestReport()
        numbered = enumerate(objects, start=1)
        with _cyclic_gc_paused():
            while batch := list(itertools.islice(numbered, self.batch_size)):
                report.merge(self._store_batch(batch))
        return report

    def _store_batch(self, items: list[tuple[int, Any]]) -> IngestReport:
        report = IngestReport()
        now = self.clock.now()
        rows: dict[str, list[dict[str, Any]]] = {k: [] for k in _INSERTERS}
        for number, obj in items:
            try:
                parsed = parse_event(obj, now)
            except EventError as exc:
                report.merge(_rejection(number, exc.field, exc.message))
                continue
            rows[parsed.kind].append(parsed.row)
        with self.store.write(serialise=False) as conn:
            for kind, kind_rows in rows.items():
                if kind_rows:
                    stored = _INSERTERS[kind](conn, kind_rows)
                    report.accepted += stored
                    report.duplicate += len(kind_rows) - stored
                    report.kinds[kind] = stored
        if report.accepted:
            for listener in self.listeners:
                listener(report)
        return report


try:  # optional accelerator: parses an ordinary event line 4-5x faster than the json module
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None


#: value types orjson may read differently from json (it makes integers past 64 bits floats)
_ASK_JSON = frozenset({float, dict, list})


def _orjson_loads(line: str | bytes) -> Any:
    """The json module's verdict on every line, faster. orjson reads an ordinary event (a flat object
    of strings, integers, booleans) exactly as json does; a line it refuses (NaN, lone surrogates, a
    BOM, deep nesting, bad JSON) or anything else (a float or a nested value) goes to json.loads,
    whose value or error stands."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)
    if type(obj) is dict and _ASK_JSON.isdisjoint(map(type, obj.values())):
        return obj
    return json.loads(line)


_loads = json.loads if orjson is None else _orjson_loads


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _cyclic_gc_paused():
    """Bulk ingest allocates hundreds of thousands of short-lived, acyclic objects (decoded JSON, rows)
    that the cyclic garbage collector scans again and again and never frees: 17% of ingest CPU time
    (docs/performance.md). Reference counting still frees them; the few cycles made meanwhile are
    collected once the last concurrent ingest of the process ends, which re-enables the collector
    only if it was enabled when the first began."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def _rejection(line: int, field: str | None, message: str) -> IngestReport:
    return IngestReport(rejected=1, errors=[IngestError(line, field, message)])
