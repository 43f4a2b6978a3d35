"""POST /api/events: decode one event, a JSON array or JSON Lines, and store them with group commit.

Requests are queued to one writer thread, which takes every request waiting and stores the whole
group in ONE write transaction through the engine's own pipeline (``Ingestor.store_groups``, as
`govcon ingest` stores a batch: the same validation, conflicts and command hooks) — each request's
rows inserted on their own so that each gets its own counts of accepted, duplicate and conflicting
events. Sixteen clients sending one event each thus cost one transaction and one thread
hand-off per group instead of per request: on SQLite, which serialises writers anyway, that is what
makes thousands of requests a second possible. A request is answered only after its group commits;
if the commit fails, every request of the group gets the error and nothing of it is stored.
A request larger than the Ingestor's batch size is stored alone, by the Ingestor, batch by batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from console.asgi_fast import content_length, read_body, replay, send_json, single_headers
from engine.ingest import (
    MAX_LINE_BYTES,
    MAX_REPORTED_ERRORS,
    IngestError,
    Ingestor,
    IngestReport,
    cyclic_gc_paused,
    overlong_message,
)
from storage.db import StoreUnavailable

log = logging.getLogger("govcon.serve.ingest")

JSON_LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines",
                              "application/json-lines", "application/jsonlines"})
GROUP_EVENTS = 50_000  # at most this many events in one group transaction
_INGEST_HEADERS = frozenset({b"authorization", b"content-length", b"content-type"})


class BadBody(ValueError):
    """The body as a whole is not events (400): empty, not JSON, or JSON of the wrong shape."""


@dataclass
class Decoded:
    """One request's events, numbered (array index or line number), and the lines that were not JSON."""

    items: list[tuple[int, Any]]
    errors: list[IngestError]
    unit: str  # "line" (JSON Lines) or "item" (an array or one object): what ``line`` in errors counts


@dataclass
class IngestOutcome:
    report: IngestReport
    items: int
    unit: str

    @property
    def status_code(self) -> int:
        """422 when an event was rejected; else 409 when one conflicts with a stored event; else 200."""
        return 422 if self.report.rejected else 409 if self.report.conflict else 200

    def to_json(self) -> dict[str, Any]:
        doc = self.report.to_json()
        report = self.report
        if report.rejected and report.errors:
            first = next((e for e in report.errors if not e.conflict), report.errors[0])
            doc["detail"] = (f"{report.rejected} of {self.items} events rejected, the first at "
                             f"{self._where(first)}: {first.message}. Nothing of a rejected event was stored; "
                             "the others were (see accepted and duplicate), and sending them again is safe")
        elif report.conflict and report.errors:
            first = report.errors[0]
            doc["detail"] = (f"{report.conflict} of {self.items} events conflict with stored events, the first "
                             f"at {self._where(first)}: {first.message}. The others were stored (see accepted "
                             "and duplicate)")
        return doc

    def _where(self, error: IngestError) -> str:
        return f"{self.unit} {error.line}" + (f", field {error.field}" if error.field else "")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str | None) -> Decoded:
    if not body.strip():
        raise BadBody("empty body: send one event object, a JSON array of events, or JSON Lines")
    if media_type(content_type) in JSON_LINES_TYPES:
        return _decode_lines(body)
    try:
        doc = json.loads(body)
    except ValueError as exc:  # also bytes that are not UTF-8
        if sum(1 for ln in body.splitlines() if ln.strip()) > 1:
            return _decode_lines(body)  # JSON Lines sent as application/json: judge each line
        raise BadBody(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise BadBody("not valid JSON: nested too deeply") from None
    if isinstance(doc, dict):
        if len(body) > MAX_LINE_BYTES:  # one event, as long as no event is (a line of JSON Lines could not be)
            return Decoded([], [IngestError(1, None, overlong_message(len(body), MAX_LINE_BYTES))], "item")
        return Decoded([(1, doc)], [], "item")
    if isinstance(doc, list):
        return Decoded(list(enumerate(doc, start=1)), [], "item")
    raise BadBody(f"the body is a JSON {type(doc).__name__}: send one event object, a JSON array of events, "
                  "or JSON Lines")


def _decode_lines(body: bytes) -> Decoded:
    """As `govcon ingest` reads a file: lines count from 1, blank lines are skipped, not rejected."""
    items, errors = [], []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:  # never decoded: as `govcon ingest` caps a line
            errors.append(IngestError(number, None, overlong_message(len(line), MAX_LINE_BYTES)))
            continue
        try:
            items.append((number, json.loads(line)))
        except ValueError as exc:
            errors.append(IngestError(number, None, f"not valid JSON: {exc}"))
        except RecursionError:
            errors.append(IngestError(number, None, "not valid JSON: nested too deeply"))
    return Decoded(items, errors, "line")


@dataclass
class _Request:
    body: bytes
    content_type: str | None
    future: asyncio.Future
    decoded: Decoded | None = None
    report: IngestReport = field(default_factory=IngestReport)

    @property
    def body_decoded(self) -> Decoded:
        """``decoded``, for the writer's steps after ``IngestService._store`` decoded the body."""
        assert self.decoded is not None  # _store decodes every request before it stores or answers it
        return self.decoded


class IngestService:
    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.store = ingestor.store
        self.clock = ingestor.clock
        self._queue: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.groups = 0  # transactions committed (for the benchmark's figures)

    def start(self) -> None:
        """Start the writer (again, after a shutdown: an app's lifespan may run more than once)."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="govcon-ingest-writer", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Finish every queued request, then stop the writer."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    async def submit(self, body: bytes, content_type: str | None) -> IngestOutcome:
        future = asyncio.get_running_loop().create_future()
        with self._ready:
            if self._stopping:
                raise RuntimeError("the server is shutting down")
            self._queue.append(_Request(body, content_type, future))
            self._ready.notify()
        return await future

    # --- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue:
                    return
                group, size = [], 0
                while self._queue and size < GROUP_EVENTS:
                    request = self._queue.popleft()
                    group.append(request)
                    size += len(request.body) // 100 + 1  # a cheap guess; decoding tells the truth
            try:
                with cyclic_gc_paused():  # decoding too makes many objects and no cycles (store_groups says why)
                    self._store(group)
            except Exception as exc:  # a bug, not bad input: answer the group, and keep the writer alive
                log.exception("ingest writer failed on a group of %d requests", len(group))
                self._answer([(r.future, None, exc) for r in group])

    def _store(self, group: list[_Request]) -> None:
        results: list[tuple[asyncio.Future, Any, BaseException | None]] = []
        small: list[_Request] = []
        for request in group:
            try:
                request.decoded = decode(request.body, request.content_type)
            except BadBody as exc:
                results.append((request.future, None, exc))
                continue
            if len(request.decoded.items) > self.ingestor.batch_size:
                results.append(self._store_alone(request))
            else:
                small.append(request)
        if small:
            results.extend(self._store_small(small))
        for request in group:
            request.body = b""  # free the memory before the event loop gets round to answering
        self._answer(results)

    def _store_small(self, small: list[_Request]) -> list[tuple[asyncio.Future, Any, BaseException | None]]:
        try:
            self._store_together(small)
            return [(r.future, self._outcome(r), None) for r in small]
        except StoreUnavailable as exc:  # nothing of the group was stored; every request hears why
            return [(r.future, None, exc) for r in small]
        except Exception as exc:
            if len(small) == 1:
                log.exception("storing events failed")
                return [(small[0].future, None, exc)]
        # one request's events broke the transaction: store each request alone, so only it fails
        return [result for r in small for result in self._store_small([r])]

    def _store_alone(self, request: _Request) -> tuple[asyncio.Future, Any, BaseException | None]:
        decoded = request.body_decoded
        try:
            report = self.ingestor.ingest_objects(obj for _, obj in decoded.items)
        except Exception as exc:
            return request.future, None, exc
        # the Ingestor numbers the objects it was given; errors name the request's own items or lines
        report.errors = [replace(e, line=decoded.items[e.line - 1][0]) for e in report.errors]
        request.report = report
        return request.future, self._outcome(request), None

    def _store_together(self, group: list[_Request]) -> None:
        """Every request of the group in one transaction, by the engine: one pipeline for all ingest."""
        reports = self.ingestor.store_groups([r.body_decoded.items for r in group])
        for request, report in zip(group, reports, strict=False):
            request.report = report
        self.groups += 1

    @staticmethod
    def _outcome(request: _Request) -> IngestOutcome:
        decoded, report = request.body_decoded, request.report
        report.rejected += len(decoded.errors)
        report.errors = sorted([*decoded.errors, *report.errors], key=lambda e: e.line)[:MAX_REPORTED_ERRORS]
        return IngestOutcome(report, len(decoded.items) + len(decoded.errors), decoded.unit)

    def _answer(self, results: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
        """Resolve the group's futures on their loop, with one wake-up of the loop for the group."""
        if not results:
            return
        loop = results[0][0].get_loop()

        def resolve() -> None:
            for future, outcome, error in results:
                if future.done():  # the client went away and the request was cancelled
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(outcome)
        try:
            loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.warning("ingest results for %d requests had nobody to answer", len(results))


# --- the route's fast path ------------------------------------------------------------------------

#: answer POST /api/events with ``IngestFastPath``; False: every request goes through the FastAPI route (the
#: tests compare the two; ``GOVCON_FAST_INGEST=0`` in a server's environment turns it off, for the benchmark)
FAST_INGEST = os.environ.get("GOVCON_FAST_INGEST", "1") != "0"


class IngestFastPath:
    """POST /api/events answered at the app's front door (console/front_door.py), ahead of FastAPI and every
    middleware (pure ASGI): the token (``auth.ingest_operator``), the body limit (a declared Content-Length
    within ``max_body``), ``IngestService.submit``, the metrics, the cached reads' refresh before the answer
    leaves (``on_change``, as ``limits.AfterChanges``) and the answer ``json_response`` would give
    (``respond``). Everything else goes to ``app``, the whole stack, which answers it as it always has: a body
    without a Content-Length or over the limit, a refused token (nothing read yet: the route refuses it with its
    usual answer), and a request whose ingest raised (its body replayed, so the route answers the error; ingest
    is idempotent, so a retried store is safe). ``FAST_INGEST`` when it is built says whether it answers at all
    (tests/integration/test_ingest_fast_path.py compares both, byte for byte)."""

    def __init__(self, app, *, auth, service: IngestService, metrics, respond=send_json, max_body: int,
                 on_change=None) -> None:
        self.app = app
        self.auth = auth
        self.service = service
        self.metrics = metrics
        self.respond = respond  # (send, doc, status): console.asgi_fast.send_json
        self.max_body = max_body
        self.on_change = on_change
        self.enabled = FAST_INGEST

    async def __call__(self, scope, receive, send) -> None:
        """POST /api/events (the front door sends no other request here)."""
        if not self.enabled:
            await self.app(scope, receive, send)
            return
        headers = single_headers(scope, _INGEST_HEADERS) or {}  # a header twice, or chunked: the stack judges it
        authorization = headers.get(b"authorization")
        if authorization is None or not 0 <= content_length(headers.get(b"content-length")) <= self.max_body:
            await self.app(scope, receive, send)  # the whole stack answers it (401, 413, chunked, a header twice …)
            return
        content_type = headers.get(b"content-type")
        started = time.perf_counter()
        try:
            await self.auth.ingest_operator(authorization.decode("latin-1"))
        except Exception:
            await self.app(scope, receive, send)  # refused: the route says why, as ever
            return
        body, _ended = await read_body(receive, self.max_body)
        if body is None:
            return  # the client went away
        if len(body) > self.max_body:  # more than it declared: the stack's BodyLimit refuses it
            await self.app(scope, replay(body, None, receive), send)
            return
        try:
            outcome = await self.service.submit(body, None if content_type is None else content_type.decode("latin-1"))
        except Exception:
            await self.app(scope, replay(body, None, receive), send)
            return
        self.metrics.count_ingest(outcome.status_code, outcome.report)
        self.metrics.ingest_latency.observe(time.perf_counter() - started)
        if self.on_change is not None:
            self.on_change()  # before the answer leaves: a read after it is fresh
        await self.respond(send, outcome.to_json(), outcome.status_code)
