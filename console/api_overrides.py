"""The alert outbox and the overrides: dead-lettered alerts retried or dismissed, the manual reversion to
L3 and the kill switch (both on the safety lane: never queued behind reads)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from console import api_models as m
from console.api_lanes import safety_route
from engine.outbox import statuses_for


def build_router(gov, auth, json_response) -> APIRouter:
    router = APIRouter()
    read = [Depends(auth.reader)]
    change, reads = m.CHANGE_ERRORS, m.READ_ERRORS

    @router.get("/api/alerts", tags=["alerts"], dependencies=read, responses=reads, response_model=list[m.Alert],
                summary="The alert outbox, newest first: waiting and dead-lettered alerts (status=all for every one)")
    def alerts(status: str | None = Query(None, pattern="^(pending|sent|dead|dismissed|all)$"),
               limit: int = Query(100, ge=1, le=10_000)):
        return json_response(gov.outbox.list(statuses=statuses_for(status), limit=limit))

    @router.post("/api/alerts/retry", tags=["alerts"], responses=change, response_model=m.AlertsChanged,
                 summary="Queue dead-lettered alerts again (superseded triggers are left dead)")
    def retry_alerts(body: m.AlertsBody, actor: str = Depends(auth.changer)):
        return json_response(gov.outbox.retry(actor, body.ids, all_dead=body.dead))

    @router.post("/api/alerts/dismiss", tags=["alerts"], responses=change, response_model=m.AlertsChanged,
                 summary="Give up on dead-lettered alerts for good, with a reason")
    def dismiss_alerts(body: m.AlertsBody, actor: str = Depends(auth.changer)):
        return json_response(gov.outbox.dismiss(actor, body.ids, all_dead=body.dead, reason=body.reason or ""))

    @router.post("/api/governance/revert", tags=["overrides"], responses=change, response_model=m.OverrideAnswer,
                 summary="Manual reversion to L3")
    @safety_route
    def revert(body: m.ReasonBody, actor: str = Depends(auth.changer)):
        return json_response(gov.overrides.revert(actor, body.reason).to_json())

    @router.post("/api/kill-switch", tags=["overrides"], responses=change, response_model=m.KillSwitchAnswer,
                 summary="Engage, release or drill the kill switch")
    @safety_route
    def kill_switch(body: m.KillSwitchBody, actor: str = Depends(auth.kill_switcher)):
        result = gov.overrides.kill_switch(body.action, actor, body.reason)  # the marker file when needed
        return json_response({**result.to_json(), "killSwitch": gov.kill_switch_status()})

    return router
