"""Batch ingest of events: validate each, store the good ones idempotently, report the bad ones.

A bad line never stores anything of itself, and never stops the good lines around it. Lines are
stored in batches, one transaction each; a listener (the breaker evaluator) runs after each commit.
"""

from __future__ import annotations

import json
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
        for number, line in enumerate(lines, start=1):
            if progress is not None:
                progress(len(line))
            if not line.strip():
                continue
            try:
                pending.append((number, json.loads(line)))
            except ValueError as exc:
                report.merge(_rejection(number, None, f"not valid JSON: {exc}"))
            if len(pending) >= self.batch_size:
                report.merge(self._store_batch(pending))
                pending = []
        if pending:
            report.merge(self._store_batch(pending))
        return report

    def ingest_objects(self, objects: Iterable[Any]) -> IngestReport:
        """Already decoded events (the HTTP API); ``line`` in errors is the item's 1-based index."""
        report = IngestReport()
        batch = list(enumerate(objects, start=1))
        for i in range(0, len(batch), self.batch_size):
            report.merge(self._store_batch(batch[i:i + self.batch_size]))
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


def _rejection(line: int, field: str | None, message: str) -> IngestReport:
    return IngestReport(rejected=1, errors=[IngestError(line, field, message)])
