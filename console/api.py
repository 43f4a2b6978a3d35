"""The HTTP API of `govcon serve` (DESIGN.md, "HTTP API"): the runbook's endpoints, ingest, the gate,
/health and Prometheus /metrics, over the same Governance facade as the CLI and the console.

Reads are open unless ``require_auth_for_reads`` (a server bound to a non-loopback address); every change
needs ``Authorization: Bearer TOKEN``, and the token's operator is the actor whose roles are checked and
who appears in the audit log. Blocking engine calls run in the threadpool (plain ``def`` endpoints).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from console import api_models as m
from console.api_auth import Auth
from console.api_ingest import BadBody, IngestFastPath, IngestService
from console.api_lanes import safety_route
from console.evaluator import CoalescingEvaluator
from console.limits import AfterChanges, BodyLimit, HostCheck, ReadRateLimit
from console.prometheus import ApiMetrics
from console.read_cache import ReadCache
from engine.alertmanager import AlertmanagerMapping
from engine.errors import (
    AlreadyInitialised,
    Conflict,
    GovconError,
    InvalidInput,
    NotFound,
    NotInitialised,
    PermissionDenied,
)
from engine.rule_language import RuleError, parse_window
from engine.rules import API_FIELDS
from engine.tokens import TokenBook
from storage.db import StoreUnavailable

log = logging.getLogger("govcon.serve")

MiB = 1024 * 1024
DEFAULT_MAX_BODY = 10 * MiB      # POST /api/events
DEFAULT_MAX_JSON_BODY = 64 * 1024  # every other body

_ERRORS: list[tuple[type[Exception], int, str]] = [
    (PermissionDenied, 403, "forbidden"), (NotFound, 404, "not_found"), (Conflict, 409, "conflict"),
    (AlreadyInitialised, 409, "conflict"), (InvalidInput, 422, "invalid_input"),
    (NotInitialised, 503, "not_initialised"), (GovconError, 400, "bad_request"),
]
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "content_too_large", 415: "unsupported_media_type",
               422: "invalid_input"}


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


def json_response(doc: Any, status_code: int = 200) -> Response:
    """Plain json.dumps: the engine's documents are JSON already, and this path is hot."""
    return Response(json.dumps(doc, default=str), status_code=status_code, media_type="application/json")


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("govcon")
    except Exception:
        return "unknown"


def _install_error_handlers(app: FastAPI) -> None:
    async def govcon_error(_request: Request, exc: GovconError) -> Response:
        for cls, status, code in _ERRORS:
            if isinstance(exc, cls):
                return json_response(error_body(code, str(exc)), status)
        return json_response(error_body("bad_request", str(exc)), 400)

    async def store_unavailable(_request: Request, exc: StoreUnavailable) -> Response:
        log.warning("store unavailable: %s", exc)
        return json_response(error_body("store_unavailable", str(exc)), 503)

    async def http_error(_request: Request, exc: HTTPException) -> Response:
        return JSONResponse(error_body(_HTTP_CODES.get(exc.status_code, "error"), str(exc.detail)),
                            exc.status_code, headers=getattr(exc, "headers", None))

    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        if "json" not in request.headers.get("content-type", "") and any(p["field"] == "body" for p in problems):
            detail = "the body must be JSON sent with Content-Type: application/json (" + detail + ")"
        return json_response(error_body("invalid_input", detail, errors=problems), 422)

    async def bad_body(_request: Request, exc: BadBody) -> Response:
        return json_response(error_body("bad_request", str(exc)), 400)

    async def unexpected(_request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return json_response(error_body("internal", "internal error; the server log has the details"), 500)

    app.add_exception_handler(GovconError, govcon_error)
    app.add_exception_handler(StoreUnavailable, store_unavailable)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(BadBody, bad_body)
    app.add_exception_handler(Exception, unexpected)


def create_app(gov, *, require_auth_for_reads: bool, tokens: TokenBook | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY, max_json_body_bytes: int = DEFAULT_MAX_JSON_BODY,
               scheduler=None, metrics_cache_seconds: float = 5.0, evaluate_interval: float = 0.02,
               on_sigusr1: Callable[[], None] | None = None, read_cache_seconds: float = 1.0,
               read_rate: float | None = None, read_burst: int = 100,
               allowed_hosts: frozenset[str] | None = None,
               alertmanager: AlertmanagerMapping | None = None) -> FastAPI:
    """The API over ``gov``. Breakers are judged by a coalescing evaluator (it replaces the Ingestor's
    listeners); ``scheduler`` (a GovconScheduler) is started and shut down with the app; ``on_sigusr1``
    (reopen the log file) runs on the event loop when the process gets SIGUSR1. ``read_cache_seconds``:
    how long the state document is reused (console/read_cache.py); ``read_rate``/``read_burst``: reads
    without a token per second and client (None: unlimited); ``allowed_hosts``: the Host check of a
    loopback bind (None: no check; the loopback names are always allowed); ``alertmanager``: how the
    Alertmanager webhook maps labels ([integrations.alertmanager])."""
    tokens = tokens or TokenBook(gov.store, gov.clock)
    metrics = ApiMetrics(gov, cache_seconds=metrics_cache_seconds)
    cached = ReadCache(gov, state_seconds=read_cache_seconds, readiness_seconds=2 * read_cache_seconds)

    def evaluate_then_refresh():  # a trip changes the state: the next read must show it
        try:
            return gov.breakers.evaluate()
        finally:
            cached.invalidate(readiness=False)

    evaluator = CoalescingEvaluator(evaluate_then_refresh, min_interval=evaluate_interval,
                                    on_evaluated=metrics.evaluation_latency.observe)
    gov.ingestor.listeners[:] = [evaluator.poke]
    ingest = IngestService(gov.ingestor)
    auth = Auth(gov, tokens, require_for_reads=require_auth_for_reads)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        evaluator.start()
        ingest.start()
        if scheduler is not None:
            scheduler.start()
        if on_sigusr1 is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, on_sigusr1)
        log.info("Starting periodic governance metrics updates (store %s, metrics cached %ss)",
                 gov.store.display_url, metrics_cache_seconds)
        try:
            yield
        finally:
            if on_sigusr1 is not None:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
            if scheduler is not None:
                scheduler.shutdown()  # releases the leader lease
            await run_in_threadpool(ingest.shutdown)
            await run_in_threadpool(evaluator.stop)
            cached.close()
            log.info("stopped: leader lease released, breakers judged one last time")

    app = FastAPI(title="govcon", version=_version(), lifespan=lifespan, responses=m.COMMON_ERRORS,
                  docs_url=None, redoc_url=None, openapi_url=None,  # served below, behind the read check
                  description="Autonomy governance: the runbook's API, ingest, the gate, health and metrics. "
                              "Changes need `Authorization: Bearer TOKEN`; reads too when the server is not "
                              "bound to a loopback address.")
    app.openapi = lambda: _openapi(app)
    app.state.gov, app.state.tokens, app.state.metrics, app.state.evaluator = gov, tokens, metrics, evaluator
    # POST /api/events without the router (console/api_ingest.py): inside every middleware below
    app.add_middleware(IngestFastPath, auth=auth, service=ingest, metrics=metrics, respond=json_response)
    app.add_middleware(BodyLimit, default=max_json_body_bytes, per_path={"/api/events": max_body_bytes,
                                                                                   "/api/rpc": max_body_bytes})
    app.add_middleware(AfterChanges, on_change=lambda path: cached.invalidate(
        readiness=path not in ("/api/events", "/api/gate")))  # readiness judges days, not each event
    from console.api_agents import HeartbeatFastPath  # beats without the router (outside AfterChanges)
    app.add_middleware(HeartbeatFastPath, agents=gov.agents, auth=auth,
                       on_write=lambda: cached.invalidate(readiness=False))
    if read_rate is not None:
        app.add_middleware(ReadRateLimit, rate=read_rate, burst=read_burst)
    if allowed_hosts is not None:  # outermost: a rebinding page gets nothing at all
        app.add_middleware(HostCheck, extra=allowed_hosts)
    _install_error_handlers(app)
    read = [Depends(auth.reader)]
    change, reads = m.CHANGE_ERRORS, m.READ_ERRORS

    # --- the API's own documents: open on loopback, behind a token otherwise -------------------

    @app.get("/openapi.json", include_in_schema=False, dependencies=read)
    def openapi_document():
        return json_response(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=read)
    def swagger_ui():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="govcon API")

    @app.get("/redoc", include_in_schema=False, dependencies=read)
    def redoc():
        return get_redoc_html(openapi_url="/openapi.json", title="govcon API")

    # --- health and metrics -------------------------------------------------------------------

    from storage.maintenance import WriteProbe
    write_probe = WriteProbe(gov.store)  # probes at most every 5 s; remembers failed writes for 30 s

    @app.get("/health", tags=["service"], summary="Is the service up, can it read the store, and write to it? "
                                                  "200 healthy or degraded (cannot write), 503 unhealthy")
    @safety_route
    def health():
        doc: dict[str, Any] = {"status": "healthy", "service": "governance", "version": _version(),
                               "store": {"backend": gov.store.dialect, "reachable": True, "writable": True}}
        marker = gov.kill_marker.engaged()
        doc["killSwitchMarker"] = marker.to_json() if marker is not None else {
            "path": str(gov.kill_marker.path), "engaged": False}
        try:
            state = gov.status(with_readiness=False)
        except (StoreUnavailable, NotInitialised) as exc:
            doc.update(status="unhealthy", detail=str(exc), killSwitchEngaged=marker is not None)
            doc["store"].update(reachable=isinstance(exc, NotInitialised), writable=False)
            return json_response(doc, 503)
        problem = write_probe.check()
        if problem is not None:  # still answering (the gate denies what it cannot record): 200, degraded
            doc.update(status="degraded", detail=f"the store cannot take writes: {problem}")
            doc["store"]["writable"] = False
        doc.update(phase=state["currentPhase"], killSwitchEngaged=state["killSwitch"]["engaged"],
                   leader=state["leader"], scheduler=_scheduler_json(scheduler))
        return json_response(doc)

    @app.get("/metrics", tags=["service"], dependencies=read, summary="Prometheus metrics",
             response_class=Response, responses={**reads, 200: {"content": {"text/plain": {}}}})
    def prometheus_metrics():
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # --- governance ---------------------------------------------------------------------------

    @app.get("/api/governance/state", tags=["governance"], dependencies=read, responses=reads,
             summary="currentPhase, commandWhitelist, pausedCommandTypes, killSwitch, … (as `govcon status --json`)")
    async def state():
        return Response(await cached.state_body(), media_type="application/json")

    @app.post("/api/governance/run-cycle", tags=["governance"], responses=change,
              summary="Run the governance cycle now; returns the GovernanceReport")
    def run_cycle(actor: str = Depends(auth.changer)):
        return json_response(gov.cycle.run(actor))

    @app.get("/api/governance/reports/latest", tags=["governance"], dependencies=read, responses=reads,
             summary="The latest GovernanceReport (404 before the first cycle)")
    def latest_report():
        report = gov.reports.latest()
        if report is None:
            raise NotFound("no governance report yet: run the cycle (POST /api/governance/run-cycle)")
        return json_response(report)

    @app.get("/api/governance/proposals", tags=["proposals"], dependencies=read, responses=reads,
             summary="Scope-expansion proposals, newest first")
    def proposals(status: str | None = Query(None, pattern="^(pending|approved|rejected|expired)$")):
        return json_response(gov.proposals.list(status=status))

    @app.get("/api/governance/proposals/{proposal_id}", tags=["proposals"], dependencies=read, responses=reads)
    def proposal(proposal_id: m.SafeId):
        return json_response(gov.proposals.show(proposal_id))

    @app.post("/api/governance/proposals/{proposal_id}/approve", tags=["proposals"], responses=change,
              summary="Approve as the role in approvedBy (the token's operator must hold it)")
    def approve(proposal_id: m.SafeId, body: m.ApproveBody, actor: str = Depends(auth.changer)):
        return json_response(gov.proposals.approve(actor, proposal_id, body.approvedBy))

    @app.post("/api/governance/proposals/{proposal_id}/reject", tags=["proposals"], responses=change)
    def reject(proposal_id: m.SafeId, body: m.RejectBody, actor: str = Depends(auth.changer)):
        return json_response(gov.proposals.reject(actor, proposal_id, body.reason))

    @app.post("/api/governance/proposals/{proposal_id}/extend", tags=["proposals"], responses=change,
              summary="A longer validation period: of a pending proposal, or of the one being validated")
    def extend(proposal_id: m.SafeId, body: m.ExtendBody, actor: str = Depends(auth.changer)):
        return json_response(gov.proposals.extend(actor, proposal_id, body.days, body.reason))

    @app.get("/api/alerts", tags=["alerts"], dependencies=read, responses=reads,
             summary="The alert outbox, newest first: waiting and dead-lettered alerts (status=all for every one)")
    def alerts(status: str | None = Query(None, pattern="^(pending|sent|dead|dismissed|all)$"),
               limit: int = Query(100, ge=1, le=10_000)):
        from engine.outbox import statuses_for
        return json_response(gov.outbox.list(statuses=statuses_for(status), limit=limit))

    @app.post("/api/alerts/retry", tags=["alerts"], responses=change,
              summary="Queue dead-lettered alerts again (superseded triggers are left dead)")
    def retry_alerts(body: m.AlertsBody, actor: str = Depends(auth.changer)):
        return json_response(gov.outbox.retry(actor, body.ids, all_dead=body.dead))

    @app.post("/api/alerts/dismiss", tags=["alerts"], responses=change,
              summary="Give up on dead-lettered alerts for good, with a reason")
    def dismiss_alerts(body: m.AlertsBody, actor: str = Depends(auth.changer)):
        return json_response(gov.outbox.dismiss(actor, body.ids, all_dead=body.dead, reason=body.reason or ""))

    @app.post("/api/governance/revert", tags=["overrides"], responses=change, summary="Manual reversion to L3")
    @safety_route
    def revert(body: m.ReasonBody, actor: str = Depends(auth.changer)):
        return json_response(gov.overrides.revert(actor, body.reason).to_json())

    @app.post("/api/kill-switch", tags=["overrides"], responses=change,
              summary="Engage, release or drill the kill switch")
    @safety_route
    def kill_switch(body: m.KillSwitchBody, actor: str = Depends(auth.changer)):
        result = gov.overrides.kill_switch(body.action, actor, body.reason)  # the marker file when needed
        return json_response({**result.to_json(), "killSwitch": gov.kill_switch_status()})

    # --- readiness and metrics ----------------------------------------------------------------

    @app.get("/api/readiness/score", tags=["readiness"], dependencies=read, responses=reads)
    async def readiness_score():
        r = await cached.readiness()
        return json_response({"score": round(r.score, 4), "ready": r.ready, "blockers": r.blockers,
                              "categories": {c: round(r.category_score(c), 4) for c in r.results},
                              "recommendation": r.recommendation, "timestamp": r.to_json()["timestamp"]})

    @app.get("/api/readiness/current", tags=["readiness"], dependencies=read, responses=reads,
             summary="The ReadinessReport (as `govcon readiness --json`)")
    async def readiness_current():
        return Response(await cached.readiness_body(), media_type="application/json")

    @app.get("/api/metrics/latest", tags=["readiness"], dependencies=read, responses=reads,
             summary="AutonomyMetrics for the period ending now (as `govcon metrics --json`)")
    def metrics_latest(since: str = Query("7d", description="30s, 5m, 1h, 7d …")):
        try:
            period = parse_window(since)
        except RuleError as exc:
            raise InvalidInput(f"since: {exc}") from None
        return json_response(gov.metrics.collect_since(period).to_json())

    # --- circuit breakers ---------------------------------------------------------------------

    @app.get("/api/circuit-breaker/rules", tags=["circuit-breaker"], dependencies=read, responses=reads)
    def rules():
        return json_response(gov.rules.list())

    @app.get("/api/circuit-breaker/rules/enabled", tags=["circuit-breaker"], dependencies=read,
             responses=reads)
    def enabled_rules():
        return json_response(gov.rules.list(enabled_only=True))

    @app.get("/api/circuit-breaker/rules/{name:path}", tags=["circuit-breaker"], dependencies=read,
             responses=reads)
    def rule(name: str):
        return json_response(gov.rules.show(name))

    @app.patch("/api/circuit-breaker/rules/{name:path}", tags=["circuit-breaker"], responses=change,
               summary="Change a rule (camelCase fields; validated whole, audited with before and after)")
    def patch_rule(name: str, body: m.RulePatch, actor: str = Depends(auth.changer)):
        changes = {API_FIELDS[k]: v for k, v in body.model_dump(exclude_unset=True).items()}
        return json_response(gov.rules.set(actor, name, changes))

    @app.get("/api/circuit-breaker/events", tags=["circuit-breaker"], dependencies=read, responses=reads)
    def events(limit: int = Query(100, ge=1, le=10_000)):
        return json_response(gov.breaker_events(limit=limit))

    @app.get("/api/circuit-breaker/events/unresolved", tags=["circuit-breaker"], dependencies=read,
             responses=reads)
    def unresolved_events():
        return json_response(gov.breaker_events(unresolved_only=True))

    @app.post("/api/circuit-breaker/events/{event_id}/resolve", tags=["circuit-breaker"], responses=change,
              summary='Resolve an event with a note saying what was found and done (required, as on the '
                      'console and the CLI)')
    def resolve(event_id: m.SafeId, body: m.ResolveBody | None = None, actor: str = Depends(auth.changer)):
        # the body stays optional in the signature so that a missing one gets this message, not pydantic's
        note = (body.note or "").strip() if body is not None else ""
        if not note:
            raise InvalidInput('note required: send {"note": "what was found and done"} (it goes into the '
                               "audit log; the console and `govcon events resolve --note` require one too)")
        return json_response(gov.breakers.resolve(actor, event_id, note=note, false_positive=body.falsePositive))

    # --- agents: ingest and the gate ----------------------------------------------------------

    @app.post("/api/events", tags=["agents"],
              openapi_extra={"requestBody": m.EVENTS_REQUEST_BODY, "security": [{"HTTPBearer": []}]},
              summary="Ingest events: one object, a JSON array, or JSON Lines",
              responses={**change, 200: {"description": "every event stored or a duplicate",
                               "content": {"application/json": {"example": {**m.INGEST_REPORT_EXAMPLE,
                                                                            "rejected": 0, "errors": []}}}},
                         422: {"description": "some events rejected (the others stored)",
                               "content": {"application/json": {"example": m.INGEST_REPORT_EXAMPLE}}},
                         413: {"description": f"body over the limit ({max_body_bytes:,} bytes)"}})
    async def ingest_events(request: Request):
        started = time.perf_counter()
        await auth.ingester(request)
        body = await request.body()
        try:
            outcome = await ingest.submit(body, request.headers.get("content-type"))
        except BadBody:
            metrics.count_ingest(400, None)
            raise
        metrics.count_ingest(outcome.status_code, outcome.report)
        metrics.ingest_latency.observe(time.perf_counter() - started)
        return json_response(outcome.to_json(), outcome.status_code)

    from console.api_actions import build_router  # the gate, action requests, the decision log, modes
    app.include_router(build_router(gov, auth, metrics, json_response))
    from console.api_calibration import build_router as calibration_router
    app.include_router(calibration_router(gov, auth, json_response))
    from console.api_integrations import build_router as integrations_router
    app.include_router(integrations_router(gov, auth, ingest, json_response, alertmanager or AlertmanagerMapping()))
    from console.api_agents import build_router as agents_router  # agents, leases, heartbeats
    app.include_router(agents_router(gov, auth, json_response))
    from console.api_rpc import build_router as rpc_router  # client mode over HTTP(S): GOVCON_SERVER=https://…
    app.include_router(rpc_router(gov, auth))
    from console.api_drilldown import build_router as drilldown_router  # GET …/events/{id}: the drill-down
    app.include_router(drilldown_router(gov, auth, json_response))
    from console.api_policies import build_router as policies_router  # policies, alert sinks (in the store)
    app.include_router(policies_router(gov, auth, json_response))

    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the reads' token marked optional (needed only off loopback)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                if "security" in operation and (method == "get" or path == "/api/gate"):
                    operation["security"] = [{}, {"HTTPBearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


def _scheduler_json(scheduler) -> dict[str, Any] | None:
    if scheduler is None:
        return None
    return {"holder": scheduler.holder, "leader": scheduler.is_leader}
