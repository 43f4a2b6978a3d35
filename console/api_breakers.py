"""Circuit-breaker rules and events: the rules with their statistics, a rule's change (validated whole,
audited), the events and their resolution. GET …/events/{id} (the drill-down) is console/api_drilldown.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from console import api_models as m
from engine.errors import InvalidInput
from engine.rules import API_FIELDS


def build_router(gov, auth, json_response) -> APIRouter:
    router = APIRouter()
    read = [Depends(auth.reader)]
    change, reads = m.CHANGE_ERRORS, m.READ_ERRORS

    @router.get("/api/circuit-breaker/rules", tags=["circuit-breaker"], dependencies=read, responses=reads,
                response_model=list[m.Rule])
    def rules():
        return json_response(gov.rules.list())

    @router.get("/api/circuit-breaker/rules/enabled", tags=["circuit-breaker"], dependencies=read,
                responses=reads, response_model=list[m.Rule])
    def enabled_rules():
        return json_response(gov.rules.list(enabled_only=True))

    @router.get("/api/circuit-breaker/rules/{name:path}", tags=["circuit-breaker"], dependencies=read,
                responses=m.ONE_READ_ERRORS, response_model=m.Rule)
    def rule(name: str):
        return json_response(gov.rules.show(name))

    @router.patch("/api/circuit-breaker/rules/{name:path}", tags=["circuit-breaker"], responses=change,
                  response_model=m.Rule,
                  summary="Change a rule (camelCase fields; validated whole, audited with before and after)")
    def patch_rule(name: str, body: m.RulePatch, actor: str = Depends(auth.changer)):
        changes = {API_FIELDS[k]: v for k, v in body.model_dump(exclude_unset=True).items()}
        return json_response(gov.rules.set(actor, name, changes))

    @router.get("/api/circuit-breaker/events", tags=["circuit-breaker"], dependencies=read, responses=reads,
                response_model=list[m.BreakerEvent])
    def events(limit: int = Query(100, ge=1, le=10_000)):
        return json_response(gov.breaker_events(limit=limit))

    @router.get("/api/circuit-breaker/events/unresolved", tags=["circuit-breaker"], dependencies=read,
                responses=reads, response_model=list[m.BreakerEvent])
    def unresolved_events():
        return json_response(gov.breaker_events(unresolved_only=True))

    @router.post("/api/circuit-breaker/events/{event_id}/resolve", tags=["circuit-breaker"], responses=change,
                 response_model=m.BreakerEvent,
                 summary='Resolve an event with a note saying what was found and done (required, as on the '
                         'console and the CLI)')
    def resolve(event_id: m.SafeId, body: m.ResolveBody | None = None, actor: str = Depends(auth.changer)):
        # the body stays optional in the signature so that a missing one gets this message, not pydantic's
        note = (body.note or "").strip() if body is not None else ""
        if not note:
            raise InvalidInput('note required: send {"note": "what was found and done"} (it goes into the '
                               "audit log; the console and `govcon events resolve --note` require one too)")
        false_positive = body is not None and body.falsePositive
        return json_response(gov.breakers.resolve(actor, event_id, note=note, false_positive=false_positive))

    return router
