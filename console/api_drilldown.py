"""GET /api/circuit-breaker/events/{id}: a breaker event's drill-down (engine/drilldown.py), the same
document as `govcon events show ID --json`."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from console import api_models as m


class DrillRule(m._Out):
    name: str
    condition: str
    window: str
    minSamples: int
    enabled: bool
    changedSinceTrip: bool


class DrillWindow(m._Out):
    start: str
    end: str
    length: str
    afterResolutionAt: str | None
    seenBy: str


class DrillCommand(m._Out):
    id: str
    type: str
    status: str
    at: str
    autonomous: bool
    service: str | None


class DrillIncident(m._Out):
    id: str
    severity: str
    commandId: str | None
    service: str | None
    at: str
    commandType: str | None
    autonomous: bool | None
    matches: bool


class DrillSafety(m._Out):
    type: str
    at: str


class CommandsAre(m._Out):
    statuses: list[str] | None
    commandType: str | None
    autonomousOnly: bool
    namedByIncidents: bool


class SeriesPoint(m._Out):
    at: str
    value: float | None
    breached: bool


class DrillSeries(m._Out):
    metric: str
    label: str
    kind: str
    op: str
    threshold: float
    minSamples: int | None
    stepSeconds: int
    points: list[SeriesPoint]


class DrillEffect(m._Out):
    action: str
    shadow: bool
    text: str
    summary: str
    revertedFrom: str | None
    revertedAt: str | None
    pausedTypes: list[str]
    stillPaused: bool | None


class DrillResolution(m._Out):
    by: str | None
    at: str | None
    note: str | None
    falsePositive: bool


class EventDrilldown(m.BreakerEvent):
    """A breaker event (the fields of `events list --json`) and what made it trip."""

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
                responses=m.ONE_READ_ERRORS,
                summary="A breaker event's drill-down: the commands and incidents in its window that made it "
                        "trip, the rule's metric against its threshold, the effect and the resolution")
    def event_drilldown(event_id: m.SafeId):
        return json_response(gov.drilldown.show(event_id))

    return router
