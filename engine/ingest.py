"""Batch ingest of events: validate each, store the good ones idempotently, report the bad ones.

A bad line never stores anything of itself, and never stops the good lines around it. Lines are
stored in batches, one transaction each; a listener (the breaker evaluator) runs after each commit.
``Ingestor.store_groups`` is the one storing pipeline: `govcon ingest`, the demo and the HTTP API's group
commit (console/api_ingest.py) all store through it, so validation, conflicts and the command hooks
run the same way everywhere.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Protocol

import orjson  # parses an ordinary event line 4-5x faster than the json module
from sqlalchemy.engine import Connection

from engine.clock import Clock
from engine.errors import InvalidInput
from engine.events import DEFAULT_TIMING, EventError, EventTiming, parse_event
from storage import events_repo
from storage.store import Store
from storage.tables import command_events, eval_coverage, incidents, safety_events

_TABLES = {"command": command_events, "incident": incidents, "safety": safety_events,
           "eval_coverage": eval_coverage}
#: column -> the event's field name, for conflict messages
_FIELD_NAMES = {"command_type": "type", "command_id": "command_id", "autonomous": "autonomous",
                "service": "service", "severity": "severity"}
_KEY_FIELDS = {"command": ("command_id", "status"), "incident": ("incident_id",)}

MAX_REPORTED_ERRORS = 1000
#: the longest line (or single event) ingest reads: an event is a few hundred bytes; a longer line is not
#: an event (a binary file, a missing newline) and is rejected by its number without being held in memory
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class IngestError:
    line: int
    field: str | None
    message: str
    conflict: bool = False  # a resend that differs from the stored event (nothing was changed)

    def to_json(self) -> dict[str, Any]:
        doc = {"line": self.line, "field": self.field, "message": self.message}
        if self.conflict:
            doc["conflict"] = True
        return doc

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.field}" if self.field else "")
        return f"{where}: {self.message}"


@dataclass
class IngestReport:
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    conflict: int = 0  # resends of a stored key whose other fields differ: reported, nothing changed
    errors: list[IngestError] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)  # accepted per kind

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicate": self.duplicate, "rejected": self.rejected,
                "conflict": self.conflict, "errors": [e.to_json() for e in self.errors]}

    def merge(self, other: IngestReport) -> None:
        self.accepted += other.accepted
        self.duplicate += other.duplicate
        self.rejected += other.rejected
        self.conflict += other.conflict
        room = MAX_REPORTED_ERRORS - len(self.errors)
        self.errors.extend(other.errors[:max(room, 0)])
        for k, n in other.kinds.items():
            self.kinds[k] = self.kinds.get(k, 0) + n


BatchListener = Callable[[IngestReport], None]


class CommandHook(Protocol):
    """Runs inside the ingest write transaction, for command events (e.g. grants: an outcome must name
    a grant). Both methods get the transaction's connection; an exception aborts the whole transaction
    (nothing of it is stored) and propagates to the caller. A hook's verdict on a row may depend on the
    store and on the rows of the same command id only: groups of requests with distinct command ids are
    then screened together (``Ingestor._store_together``). On PostgreSQL ingest takes no store-wide write
    lock: a hook whose verdict reads what a concurrent ingest may be changing takes the command-events lock
    (``storage.rollups.lock_events``, which the insert takes anyway) before that read, and only for the rows
    that need it (ActionBook.screen: outcomes naming grants), so other batches pay nothing."""

    def screen(self, conn: Connection, rows: list[tuple[int, dict[str, Any]]]) -> dict[int, tuple[str, str]]:
        """Before the insert: ``rows`` are (line number, parsed command row); returns {line: (field,
        message)} for the lines to reject (reported as rejected lines; nothing of them is stored)."""

    def stored(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """After the insert: the command rows that passed every screen and were stored now (not
        duplicates of stored events, not conflicts)."""


class Ingestor:
    def __init__(self, store: Store, clock: Clock, *, batch_size: int = 20_000,
                 timing: EventTiming = DEFAULT_TIMING, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.store = store
        self.clock = clock
        self.batch_size = batch_size
        self.timing = timing
        self.max_line_bytes = max_line_bytes
        self.listeners: list[BatchListener] = []
        self.command_hooks: list[CommandHook] = []

    def ingest_lines(self, lines: Iterable[str | bytes], *,
                     progress: Callable[[int], None] | None = None) -> IngestReport:
        """JSON Lines; line numbers in errors count from 1 and include blank lines. A file object is read
        line by line with the line-length cap (``max_line_bytes``): a longer line is rejected and
        skipped without being held in memory; a line given already read is rejected by its length."""
        report = IngestReport()
        pending: list[tuple[int, Any]] = []
        loads, batch_size, limit = _loads, self.batch_size, self.max_line_bytes  # locals: one pass per line
        source: Iterable[Any] = lines  # str | bytes, or Overlong from capped_lines (checked by type() per line)
        if hasattr(lines, "readline"):
            source = capped_lines(lines, limit)  # type: ignore[arg-type]  # a file object: hasattr above
        with cyclic_gc_paused():
            for number, line in enumerate(source, start=1):
                if type(line) is Overlong or (len(line) > limit and len(line.rstrip()) > limit):
                    size = line.size if type(line) is Overlong else len(line)
                    if progress is not None:
                        progress(size)
                    report.merge(_rejection(number, None, overlong_message(size, limit)))
                    continue
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
        with cyclic_gc_paused():
            while batch := list(itertools.islice(numbered, self.batch_size)):
                report.merge(self._store_batch(batch))
        return report

    def _store_batch(self, items: list[tuple[int, Any]]) -> IngestReport:
        return self.store_groups([items])[0]

    def store_groups(self, groups: Sequence[Sequence[tuple[int, Any]]]) -> list[IngestReport]:
        """Validate and store several groups of numbered events in ONE write transaction, each group with
        its own report (the HTTP API's group commit: one group per request). The listeners run once,
        after the commit, when anything was stored. If the transaction fails, nothing of any group is
        stored and the exception propagates. The collector is paused here too, for the HTTP API's writer:
        its collections ran many times per group, a fifth of the server's CPU under batch load
        (docs/performance.md, "Eleventh session"); a paused collector catches up once, at the first allocation
        after the group."""
        with cyclic_gc_paused():
            return self._store_groups(groups)

    def _store_groups(self, groups: Sequence[Sequence[tuple[int, Any]]]) -> list[IngestReport]:
        now = self.clock.now()
        timing = self.timing
        parsed_groups: list[tuple[IngestReport, dict[str, list[tuple[int, dict[str, Any]]]]]] = []
        for items in groups:
            report = IngestReport()
            rows: dict[str, list[tuple[int, dict[str, Any]]]] = {}
            for number, obj in items:
                try:
                    parsed = parse_event(obj, now, timing)
                except EventError as exc:
                    report.rejected += 1
                    report.errors.append(IngestError(number, exc.field, exc.message))
                    continue
                rows.setdefault(parsed.kind, []).append((number, parsed.row))
            parsed_groups.append((report, rows))
        with self.store.write(serialise=False, lane="ingest") as conn:
            if len(parsed_groups) > 1 and _independent(parsed_groups):
                self._store_together(conn, parsed_groups)
            else:
                for report, rows in parsed_groups:
                    self._store_rows(conn, report, rows)
        reports = [report for report, _ in parsed_groups]
        for report in reports:  # parse errors, then screened lines and conflicts: in line order again
            report.errors.sort(key=lambda e: e.line)
            del report.errors[MAX_REPORTED_ERRORS:]
        accepted = sum(r.accepted for r in reports)
        if accepted:
            combined = reports[0] if len(reports) == 1 else IngestReport(accepted=accepted)
            for listener in self.listeners:
                listener(combined)
        return reports

    def _store_rows(self, conn: Connection, report: IngestReport,
                    rows: dict[str, list[tuple[int, dict[str, Any]]]]) -> None:
        """One group's rows, inside the caller's transaction: screen, insert, classify, notify."""
        commands = rows.get("command")
        if commands and self.command_hooks:
            commands = rows["command"] = self._screen(conn, report, commands)
        for kind, numbered in rows.items():
            if not numbered:
                continue
            inserted = events_repo.insert_classified(conn, _TABLES[kind], [row for _, row in numbered])
            report.accepted += inserted.stored
            report.duplicate += inserted.duplicate
            report.kinds[kind] = report.kinds.get(kind, 0) + inserted.stored
            for i, column, stored_value in inserted.conflicts:
                number, row = numbered[i]
                report.conflict += 1
                report.errors.append(_conflict(number, kind, row, column, stored_value))
            if kind == "command" and self.command_hooks and inserted.stored:
                new_rows = [numbered[i][1] for i in inserted.new or ()]
                for hook in self.command_hooks:
                    hook.stored(conn, new_rows)

    def _store_together(self, conn: Connection,
                        groups: list[tuple[IngestReport, dict[str, list[tuple[int, dict[str, Any]]]]]]) -> None:
        """Several groups' rows with one screen per hook and one insert per kind (the HTTP API's group of
        single-event requests: one statement per request was most of its writer's time), each row's outcome
        counted in its own group's report. Only for groups ``_independent`` says may share them: then each
        group's rows are classified and screened exactly as if the groups were stored one after another."""
        if self.command_hooks:
            tagged = [(g, number, row) for g, (_, rows) in enumerate(groups) for number, row in rows.get("command", ())]
            commands = [(i, row) for i, (_, _, row) in enumerate(tagged)]
            for hook in self.command_hooks:
                refused = hook.screen(conn, commands) if commands else {}
                for i, _row in commands:
                    if i in refused:
                        g, number, _ = tagged[i]
                        field_name, message = refused[i]
                        groups[g][0].rejected += 1
                        groups[g][0].errors.append(IngestError(number, field_name, message))
                commands = [(i, row) for i, row in commands if i not in refused]
            for _, rows in groups:
                if "command" in rows:
                    rows["command"] = []
            for i, row in commands:
                g, number, _ = tagged[i]
                groups[g][1]["command"].append((number, row))
        kinds = dict.fromkeys(kind for _, rows in groups for kind in rows)
        for kind in kinds:
            owners = [(report, number, row) for report, rows in groups for number, row in rows.get(kind, ())]
            if not owners:
                continue
            inserted = events_repo.insert_classified(conn, _TABLES[kind], [row for _, _, row in owners])
            new = set(inserted.new or ())
            conflicts = {i: (column, stored_value) for i, column, stored_value in inserted.conflicts}
            for report, _, _ in owners:
                report.kinds.setdefault(kind, 0)  # as one by one: a kind sent and none of it new counts 0
            for i, (report, number, row) in enumerate(owners):
                if i in new:
                    report.accepted += 1
                    report.kinds[kind] = report.kinds.get(kind, 0) + 1
                elif i in conflicts:
                    report.conflict += 1
                    report.errors.append(_conflict(number, kind, row, *conflicts[i]))
                else:
                    report.duplicate += 1
            if kind == "command" and self.command_hooks and new:
                new_rows = [owners[i][2] for i in sorted(new)]
                for hook in self.command_hooks:
                    hook.stored(conn, new_rows)

    def _screen(self, conn: Connection, report: IngestReport,
                commands: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
        for hook in self.command_hooks:
            refused = hook.screen(conn, commands) if commands else {}
            if refused:
                for number, _row in commands:
                    if number in refused:
                        field_name, message = refused[number]
                        report.rejected += 1
                        report.errors.append(IngestError(number, field_name, message))
                commands = [(n, row) for n, row in commands if n not in refused]
        return commands


def _independent(groups: list[tuple[IngestReport, dict[str, list[tuple[int, dict[str, Any]]]]]]) -> bool:
    """May these groups be stored with one insert per kind (``Ingestor._store_together``)? Only kinds whose
    insert says row by row what it did (commands and incidents: new, duplicate or conflict), and no command
    id in two groups: a command hook's verdict on a row depends on the store and the rows of the same
    command id only (CommandHook), so no group's stored rows change how another's are screened."""
    seen: dict[str, int] = {}
    for g, (_, rows) in enumerate(groups):
        for kind in rows:
            if kind not in ("command", "incident"):
                return False
        for _, row in rows.get("command", ()):
            if seen.setdefault(row["command_id"], g) != g:
                return False
    return True


def _conflict(number: int, kind: str, row: dict[str, Any], column: str, stored_value: Any) -> IngestError:
    key = "/".join(str(row[c]) for c in _KEY_FIELDS[kind])
    name = _FIELD_NAMES.get(column, column)
    return IngestError(number, name, f"conflicts with the stored {kind} event {key}: {name} is "
                                     f"{json.dumps(row.get(column))} here but {json.dumps(stored_value)} "
                                     "stored; the stored event is kept unchanged (a resend must repeat it)",
                       conflict=True)


def open_event_source(source: str) -> tuple[BinaryIO, int | None]:
    """`govcon ingest FILE`: the file opened for reading and its size (None for a pipe or a terminal).

    Only what ends its lines is read: a regular file, a pipe (FIFO) or a terminal. A missing file, a
    directory, a file that cannot be read and a device such as /dev/zero (a line that never ends) are
    refused with InvalidInput naming the path, before anything is read.
    """
    try:
        stream = open(source, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise InvalidInput(f"{source}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{source}: is a directory, not a file of events (JSON Lines)") from None
    except PermissionError:
        raise InvalidInput(f"{source}: permission denied: cannot read it") from None
    except OSError as exc:
        raise InvalidInput(f"{source}: cannot open it: {exc.strerror or exc}") from None
    try:
        size = readable_source_size(stream, source)
    except BaseException:
        stream.close()
        raise
    return stream, size


def readable_source_size(stream: IO[Any], name: str) -> int | None:
    """The size of a regular file, None for a pipe or a terminal; InvalidInput for anything else. A
    stream without a file descriptor (e.g. in memory) is taken as it is."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return os.fstat(fd).st_size
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
        return None
    what = "a directory" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
        else "not a regular file"
    raise InvalidInput(f"{name}: is {what}, not a file of events: ingest reads a regular file, a pipe or a "
                       "terminal (a device such as /dev/zero never ends a line)")


@dataclass(frozen=True)
class Overlong:
    """A line over the cap, skipped unread: ``size`` is how many bytes it had."""

    size: int


def capped_lines(stream: IO[Any], limit: int = MAX_LINE_BYTES,
                 chunk: int = 1 << 16) -> Iterator[bytes | str | Overlong]:
    """The lines of a file object, each at most ``limit`` bytes (the newline not counted); a longer one
    is read past in chunks and yielded as ``Overlong``, so that memory stays bounded whatever the input."""
    readline = stream.readline
    while True:
        line = readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line[-1:] in ("\n", b"\n"):
            yield line
            continue
        size = len(line)
        while True:  # the rest of the over-long line, never held
            part = readline(chunk)
            size += len(part)
            if not part or part[-1:] in ("\n", b"\n"):
                break
        yield Overlong(size)


def overlong_message(size: int, limit: int) -> str:
    return (f"the line is {size:,} bytes, over the limit of {limit:,} bytes per line: an event is one JSON "
            "object per line (is this a JSON Lines file?); nothing of it was read as an event")



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


_loads = _orjson_loads


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
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
