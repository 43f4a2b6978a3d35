"""The governance routes: the state (as `govcon status --json`), the weekly cycle and its report, and the
scope-expansion proposals with their approvals."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from console import api_models as m
from engine.errors import NotFound


def build_router(gov, auth, cached, json_response) -> APIRouter:
    router = APIRouter()
    read = [Depends(auth.reader)]
    change, reads, one = m.CHANGE_ERRORS, m.READ_ERRORS, m.ONE_READ_ERRORS

    @router.get("/api/governance/state", tags=["governance"], dependencies=read, responses=reads,
                response_model=m.GovernanceState,
                summary="currentPhase, commandWhitelist, pausedCommandTypes, killSwitch, … (as `govcon status "
                        "--json`)")
    async def state():
        return Response(await cached.state_body(), media_type="application/json")

    @router.post("/api/governance/run-cycle", tags=["governance"], responses=change,
                 response_model=m.GovernanceReport,
                 summary="Run the governance cycle now; returns the GovernanceReport")
    def run_cycle(actor: str = Depends(auth.changer)):
        return json_response(gov.cycle.run(actor))

    @router.get("/api/governance/reports/latest", tags=["governance"], dependencies=read, responses=one,
                response_model=m.StoredReport, summary="The latest GovernanceReport (404 before the first cycle)")
    def latest_report():
        report = gov.reports.latest()
        if report is None:
            raise NotFound("no governance report yet: run the cycle (POST /api/governance/run-cycle)")
        return json_response(report)

    @router.get("/api/governance/proposals", tags=["proposals"], dependencies=read, responses=reads,
                response_model=list[m.Proposal], summary="Scope-expansion proposals, newest first")
    def proposals(status: str | None = Query(None, pattern="^(pending|approved|rejected|expired)$")):
        return json_response(gov.proposals.list(status=status))

    @router.get("/api/governance/proposals/{proposal_id}", tags=["proposals"], dependencies=read, responses=one,
                response_model=m.Proposal)
    def proposal(proposal_id: m.SafeId):
        return json_response(gov.proposals.show(proposal_id))

    @router.post("/api/governance/proposals/{proposal_id}/approve", tags=["proposals"], responses=change,
                 response_model=m.Proposal,
                 summary="Approve as the role in approvedBy (the token's operator must hold it)")
    def approve(proposal_id: m.SafeId, body: m.ApproveBody, actor: str = Depends(auth.changer)):
        return json_response(gov.proposals.approve(actor, proposal_id, body.approvedBy))

    @router.post("/api/governance/proposals/{proposal_id}/reject", tags=["proposals"], responses=change,
                 response_model=m.Proposal)
    def reject(proposal_id: m.SafeId, body: m.RejectBody, actor: str = Depends(auth.changer)):
        return json_response(gov.proposals.reject(actor, proposal_id, body.reason))

    @router.post("/api/governance/proposals/{proposal_id}/extend", tags=["proposals"], responses=change,
                 response_model=m.Proposal,
                 summary="A longer validation period: of a pending proposal, or of the one being validated")
    def extend(proposal_id: m.SafeId, body: m.ExtendBody, actor: str = Depends(auth.changer)):
        return json_response(gov.proposals.extend(actor, proposal_id, body.days, body.reason))

    return router
