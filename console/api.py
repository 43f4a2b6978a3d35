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
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from console import (
    api_actions,
    api_agents,
    api_breakers,
    api_calibration,
    api_drilldown,
    api_events,
    api_governance,
    api_integrations,
    api_overrides,
    api_policies,
    api_readiness,
    api_rpc,
    api_service,
)
from console import api_models as m
from console.api_actions import GateFastPath
from console.api_agents import ForgetStateOnChange, HeartbeatFastPath
from console.api_auth import Auth
from console.api_ingest import BadBody, IngestFastPath, IngestService
from console.asgi_fast import INTERNAL_ERROR
from console.evaluator import CoalescingEvaluator
from console.front_door import FrontDoor
from console.limits import AfterChanges, BodyLimit, HostCheck, ReadRateLimit, allowed_host_names
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
        return version("govcon")
    except Exception:
        return "unknown"


def _install_error_handlers(app: FastAPI) -> None:
    async def govcon_error(_request: Request, exc: Exception) -> Response:
        for cls, status, code in _ERRORS:
            if isinstance(exc, cls):
                return json_response(error_body(code, str(exc)), status)
        return json_response(error_body("bad_request", str(exc)), 400)

    async def store_unavailable(_request: Request, exc: Exception) -> Response:
        log.warning("store unavailable: %s", exc)
        return json_response(error_body("store_unavailable", str(exc)), 503)

    async def http_error(_request: Request, error: Exception) -> Response:
        exc = cast(HTTPException, error)
        return JSONResponse(error_body(_HTTP_CODES.get(exc.status_code, "error"), str(exc.detail)),
                            exc.status_code, headers=getattr(exc, "headers", None))

    async def invalid_request(request: Request, error: Exception) -> Response:
        exc = cast(RequestValidationError, error)
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        if "json" not in request.headers.get("content-type", "") and any(p["field"] == "body" for p in problems):
            detail = "the body must be JSON sent with Content-Type: application/json (" + detail + ")"
        return json_response(error_body("invalid_input", detail, errors=problems), 422)

    async def bad_body(_request: Request, exc: Exception) -> Response:
        return json_response(error_body("bad_request", str(exc)), 400)

    async def unexpected(_request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return json_response(INTERNAL_ERROR, 500)

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
    # the facade's own book: a revocation through the service (gov.tokens.revoke) empties the cache Auth reads
    tokens = tokens or getattr(gov, "tokens", None) or TokenBook(gov.store, gov.clock)
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

    app = GovconAPI(title="govcon", version=_version(), lifespan=lifespan, responses=m.COMMON_ERRORS,
                  docs_url=None, redoc_url=None, openapi_url=None,  # served below, behind the read check
                  # govcon exports its own metrics (/metrics); FastAPI's OpenTelemetry hooks asked for their
                  # providers (environment variables included) on every request: ~10 µs each, for nothing
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  description="Autonomy governance: the runbook's API, ingest, the gate, health and metrics. "
                              "Changes need `Authorization: Bearer TOKEN`; reads too when the server is not "
                              "bound to a loopback address.")
    app.state.gov, app.state.tokens, app.state.metrics, app.state.evaluator = gov, tokens, metrics, evaluator
    # the hot requests at the front door, ahead of FastAPI and every middleware below (console/front_door.py):
    # it and the fast paths do the Host check, body limits and refreshes of those layers for them
    stack = app.behind_front_door
    refresh = lambda: cached.invalidate(readiness=False)  # noqa: E731 - readiness judges days, not each event
    app.front_door = FrontDoor(
        stack,
        ingest=IngestFastPath(stack, auth=auth, service=ingest, metrics=metrics, max_body=max_body_bytes,
                              on_change=refresh),
        gate=GateFastPath(gov, auth, metrics, fallback=stack, max_body=max_json_body_bytes, on_change=refresh)
        if api_actions.FAST_GATE else None,
        beats=HeartbeatFastPath(agents=gov.agents, auth=auth, on_write=refresh),
        allowed_hosts=None if allowed_hosts is None else allowed_host_names(allowed_hosts))
    app.add_middleware(BodyLimit, default=max_json_body_bytes, per_path={"/api/events": max_body_bytes,
                                                                                   "/api/rpc": max_body_bytes})
    app.add_middleware(AfterChanges, on_change=lambda path: cached.invalidate(
        readiness=path not in ("/api/events", "/api/gate")))  # readiness judges days, not each event
    app.add_middleware(ForgetStateOnChange, agents=gov.agents)  # outside AfterChanges, as the beats were
    if read_rate is not None:
        app.add_middleware(ReadRateLimit, rate=read_rate, burst=read_burst)
    if allowed_hosts is not None:  # outermost: a rebinding page gets nothing at all
        app.add_middleware(HostCheck, extra=allowed_hosts)
    _install_error_handlers(app)
    # one router per area; each route is one call into the engine and declares what it answers. The hot
    # routes' routers first: FastAPI matches a request router by router, in this order
    app.include_router(api_events.build_router(auth, ingest, metrics, json_response,
                                               max_body_bytes=max_body_bytes))  # POST /api/events
    app.include_router(api_actions.build_router(gov, auth, metrics, json_response))  # gate, actions, modes
    app.include_router(api_agents.build_router(gov, auth, json_response))  # agents, leases, heartbeats
    app.include_router(api_service.build_router(app, gov, auth, metrics, json_response, version=_version(),
                                                scheduler=scheduler))  # /openapi.json, /health, /metrics
    app.include_router(api_governance.build_router(gov, auth, cached, json_response))  # state, cycle, proposals
    app.include_router(api_overrides.build_router(gov, auth, json_response))  # alerts, revert, kill switch
    app.include_router(api_readiness.build_router(gov, auth, cached, json_response))  # readiness, metrics
    app.include_router(api_breakers.build_router(gov, auth, json_response))  # rules and events
    app.include_router(api_drilldown.build_router(gov, auth, json_response))  # GET …/events/{id}, after /unresolved
    app.include_router(api_calibration.build_router(gov, auth, json_response))
    app.include_router(api_integrations.build_router(gov, auth, ingest, json_response,
                                                     alertmanager or AlertmanagerMapping()))
    app.include_router(api_rpc.build_router(gov, auth))  # client mode over HTTP(S): GOVCON_SERVER=https://…
    app.include_router(api_policies.build_router(gov, auth, json_response))  # policies, alert sinks

    return app


class GovconAPI(FastAPI):
    """FastAPI with a front door: ``front_door`` (an ASGI app, set by create_app) gets every request first and
    hands what it does not answer itself to ``behind_front_door`` — FastAPI with its middleware."""

    front_door: Callable[..., Any] | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self.front_door is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front_door(scope, receive, send)

    async def behind_front_door(self, scope, receive, send) -> None:
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, with the reads' token marked optional (needed only off loopback)."""
        if self.openapi_schema is None:
            schema = super().openapi()
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    if "security" in operation and (method == "get" or path == "/api/gate"):
                        operation["security"] = [{}, {"HTTPBearer": []}]
            self.openapi_schema = schema
        return self.openapi_schema
