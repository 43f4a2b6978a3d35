"""GET /api/agents/{name}/calibration: does the agent's stated confidence match what happened?"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from console import api_models as m


def build_router(gov, auth, json_response) -> APIRouter:
    router = APIRouter()

    @router.get("/api/agents/{name}/calibration", tags=["agents"], dependencies=[Depends(auth.reader)],
                responses=m.READ_ERRORS, response_model=m.Calibrations,
                summary="Stated confidence against observed success per bin, Brier score and ECE (null figures "
                        "without outcomes); per command type unless byType=false")
    def calibration(name: m.SafeId, byType: bool = Query(True, description="one calibration per command type")):
        return json_response({"agent": name, "calibrations": [c.to_json() for c in
                                                              gov.calibration.report(name, by_type=byType)]})

    return router
