"""GET /api/circuit-breaker/events/{id}: a breaker event's drill-down (engine/drilldown.py), the same
document as `govcon events show ID --json`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from console import api_models as m


class DrillRule(BaseModel):
    name: str
    condition: str
    window: str
    minSamples: int
    enabled: bool
    changedSinceTrip: bool


class DrillWindow(BaseModel):
    start: str
    end: str
    length: str
    afterResolutionAt: str | None
    seenBy: str


class DrillCommand(BaseModel):
    id: str
    type: str
    status: str
    at: str
    autonomous: bool
    service: str | None


class DrillIncident(BaseModel):
    id: str
    severity: str
    commandId: str | None
    service: str | None
    at: str
    commandType: str | None
    autonomous: bool | None
    matches: bool


class DrillSafety(BaseModel):
    type: str
    at: str


class CommandsAre(BaseModel):
    statuses: list[str] | None
    commandType: str | None
    autonomousOnly: bool
    namedByIncidents: bool


class SeriesPoint(BaseModel):
    at: str
    value: float | None
    breached: bool


class DrillSeries(BaseModel):
    metric: str
    label: str
    kind: str
    op: str
    threshold: float
    minSamples: int | None
    stepSeconds: int
    points: list[SeriesPoint]


class DrillEffect(BaseModel):
    action: str
    shadow: bool
    text: str
    summary: str
    revertedFrom: str | None
    revertedAt: str | None
    pausedTypes: list[str]
    stillPaused: bool | None


class DrillResolution(BaseModel):
    by: str | None
    at: str | None
    note: str | None
    falsePositive: bool


class EventDrilldown(BaseModel):
    """A breaker event (the fields of `events list --json`) and what made it trip."""

    id: str
    ruleName: str
    timestamp: str
    severity: str
    action: str
    commandType: str | None
    observed: dict[str, Any]
    shadow: bool
    resolved: bool
    resolvedBy: str | None
    resolvedAt: str | None
    note: str | None
    falsePositive: bool
    rule: DrillRule | None
    window: DrillWindow
    incidents: list[DrillIncident]
    incidentsInWindow: int
    safety: list[DrillSafety]
    safetyInWindow: int
    commandsAre: CommandsAre
    commands: list[DrillCommand]
    commandsMatching: int
    series: DrillSeries | None
    effect: DrillEffect
    resolution: DrillResolution | None


def build_router(gov, auth, json_response) -> APIRouter:
    router = APIRouter()

    @router.get("/api/circuit-breaker/events/{event_id}", tags=["circuit-breaker"],
                dependencies=[Depends(auth.reader)], response_model=EventDrilldown,
                responses={**m.READ_ERRORS, 404: {"description": "no breaker event with this id"}},
                summary="A breaker event's drill-down: the commands and incidents in its window that made it "
                        "trip, the rule's metric against its threshold, the effect and the resolution")
    def event_drilldown(event_id: m.SafeId):
        return json_response(gov.drilldown.show(event_id))

    return router
