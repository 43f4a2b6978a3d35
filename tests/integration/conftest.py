"""Fixtures for the integration tests: event builders, ingest into the real store, and the CLI run
in-process against the store under test (the operator is the OS user running the tests)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from console.identity import current_operator
from engine.clock import isoformat


@dataclass
class Events:
    """Builds event objects as agents send them; ``at`` defaults to ``base``."""

    base: datetime

    def _at(self, at: datetime | None) -> str:
        return isoformat(at or self.base)

    def command(self, cid: str, status: str, *, type: str = "restart_service", autonomous: bool = True,
                at: datetime | None = None) -> dict[str, Any]:
        return {"kind": "command", "id": cid, "type": type, "status": status, "autonomous": autonomous,
                "at": self._at(at)}

    def lifecycle(self, cid: str, statuses: Iterable[str], *, at: datetime | None = None,
                  **kw: Any) -> list[dict[str, Any]]:
        """One command's statuses, a second apart from ``at``."""
        start = at or self.base
        return [self.command(cid, s, at=start + timedelta(seconds=i), **kw) for i, s in enumerate(statuses)]

    def incident(self, iid: str, severity: str, command_id: str | None = None, *,
                 at: datetime | None = None) -> dict[str, Any]:
        doc = {"kind": "incident", "id": iid, "severity": severity, "at": self._at(at)}
        if command_id is not None:
            doc["command_id"] = command_id
        return doc

    def safety(self, type: str, *, at: datetime | None = None, id: str | None = None) -> dict[str, Any]:
        doc = {"kind": "safety", "type": type, "at": self._at(at)}
        if id is not None:
            doc["id"] = id
        return doc

    def coverage(self, covered: int, total: int, *, at: datetime | None = None) -> dict[str, Any]:
        return {"kind": "eval_coverage", "covered": covered, "total": total, "at": self._at(at)}


def jsonl(events: Iterable[dict[str, Any] | str]) -> str:
    """JSON Lines; a str item is written as it is (for malformed lines)."""
    return "".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events)


@pytest.fixture
def ev(clock) -> Events:
    """Events an hour before the test clock's now, inside every default period."""
    return Events(clock.now() - timedelta(hours=1))


@pytest.fixture
def ingest(gov) -> Callable:
    """Ingest event objects (or raw lines) through the batch engine API, as lines of a file."""
    def _ingest(events: Iterable[dict[str, Any] | str]):
        return gov.ingestor.ingest_lines(jsonl(events).splitlines(keepends=True))
    return _ingest


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def me() -> str:
    """The operator the CLI sees: the OS user of this process."""
    return current_operator()


@pytest.fixture
def cli(store_url, clock, monkeypatch) -> Callable[..., CliResult]:
    """``cli("status", "--json")`` runs console.cli.main in-process on the store under test."""
    from console.cli import main

    monkeypatch.setenv("GOVCON_DATABASE_URL", store_url)

    def run(*argv: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), clock=clock, out=out, err=err)
        return CliResult(code, out.getvalue(), err.getvalue())
    return run
