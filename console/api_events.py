"""POST /api/events: agents' ingest — one event, a JSON array or JSON Lines, group-committed by the
IngestService (console/api_ingest.py). The body is read raw (no request model: JSON Lines is not JSON), and
the token is checked by the endpoint itself (as a dependency it cost a fifth of a single-event request)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from console import api_models as m
from console.api_ingest import BadBody


def build_router(auth, ingest, metrics, json_response, *, max_body_bytes: int) -> APIRouter:
    router = APIRouter()

    @router.post("/api/events", tags=["agents"], response_model=m.IngestReport,
                 openapi_extra={"requestBody": m.EVENTS_REQUEST_BODY, "security": [{"HTTPBearer": []}]},
                 summary="Ingest events: one object, a JSON array, or JSON Lines",
                 responses={**m.CHANGE_ERRORS,
                            200: {"description": "every event stored or a duplicate",
                                  "content": {"application/json": {"example": {**m.INGEST_REPORT_EXAMPLE,
                                                                               "rejected": 0, "errors": []}}}},
                            400: {"model": m.ErrorBody, "description": "the body is not events at all"},
                            409: {"model": m.IngestReport,
                                  "description": "some events conflict with stored ones (the others stored)"},
                            422: {"model": m.IngestReport, "description": "some events rejected (the others stored)",
                                  "content": {"application/json": {"example": m.INGEST_REPORT_EXAMPLE}}},
                            413: {"model": m.ErrorBody,
                                  "description": f"body over the limit ({max_body_bytes:,} bytes)"}})
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

    return router
