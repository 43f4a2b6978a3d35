"""Readiness and metrics: the score, the ReadinessReport (both from the read cache) and AutonomyMetrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from console import api_models as m
from engine.errors import InvalidInput
from engine.rule_language import RuleError, parse_window


def build_router(gov, auth, cached, json_response) -> APIRouter:
    router = APIRouter()
    read = [Depends(auth.reader)]
    reads = m.READ_ERRORS

    @router.get("/api/readiness/score", tags=["readiness"], dependencies=read, responses=reads,
                response_model=m.ReadinessScore)
    async def readiness_score():
        r = await cached.readiness()
        return json_response({"score": round(r.score, 4), "ready": r.ready, "blockers": r.blockers,
                              "categories": {c: round(r.category_score(c), 4) for c in r.results},
                              "recommendation": r.recommendation, "timestamp": r.to_json()["timestamp"]})

    @router.get("/api/readiness/current", tags=["readiness"], dependencies=read, responses=reads,
                response_model=m.ReadinessReport, summary="The ReadinessReport (as `govcon readiness --json`)")
    async def readiness_current():
        return Response(await cached.readiness_body(), media_type="application/json")

    @router.get("/api/metrics/latest", tags=["readiness"], dependencies=read, responses=reads,
                response_model=m.AutonomyMetrics,
                summary="AutonomyMetrics for the period ending now (as `govcon metrics --json`)")
    def metrics_latest(since: str = Query("7d", description="30s, 5m, 1h, 7d …")):
        try:
            period = parse_window(since)
        except RuleError as exc:
            raise InvalidInput(f"since: {exc}") from None
        return json_response(gov.metrics.collect_since(period).to_json())

    return router
