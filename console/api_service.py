"""The service's own routes: the API's documents (/openapi.json, /docs, /redoc: open on loopback, behind a
token otherwise), GET /health (always open: probes carry no token) and Prometheus GET /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import Response

from console import api_models as m
from console.api_lanes import safety_route
from engine.errors import NotInitialised
from storage.db import StoreUnavailable
from storage.maintenance import WriteProbe


def build_router(app: FastAPI, gov, auth, metrics, json_response, *, version: str, scheduler=None) -> APIRouter:
    router = APIRouter()
    read = [Depends(auth.reader)]

    @router.get("/openapi.json", include_in_schema=False, dependencies=read)
    def openapi_document():
        return json_response(app.openapi())

    @router.get("/docs", include_in_schema=False, dependencies=read)
    def swagger_ui():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="govcon API")

    @router.get("/redoc", include_in_schema=False, dependencies=read)
    def redoc():
        return get_redoc_html(openapi_url="/openapi.json", title="govcon API")

    write_probe = WriteProbe(gov.store)  # probes at most every 5 s; remembers failed writes for 30 s

    @router.get("/health", tags=["service"], response_model=m.Health,
                responses={503: {"model": m.Health, "description": "unhealthy: the store cannot be read"}},
                summary="Is the service up, can it read the store, and write to it? 200 healthy or degraded "
                        "(cannot write), 503 unhealthy")
    @safety_route
    def health():
        doc: dict[str, Any] = {"status": "healthy", "service": "governance", "version": version,
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

    @router.get("/metrics", tags=["service"], dependencies=read, summary="Prometheus metrics",
                response_class=Response, responses={**m.READ_ERRORS, **m.text_answer(
                    "text/plain", "the Prometheus text exposition format, version 0.0.4")})
    def prometheus_metrics():
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router


def _scheduler_json(scheduler) -> dict[str, Any] | None:
    if scheduler is None:
        return None
    return {"holder": scheduler.holder, "leader": scheduler.is_leader}
