"""HTTP routes of governed actions (DESIGN.md v2): the gate, action requests, the decision log, modes.

POST /api/gate answers without a token on loopback (as every read does), and then grants to the agent
named in the body; with a token the asker is the token's operator. Queueing an action request
(``"request": true``) pages people, so it needs a token, like every change.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from console import api_models as m
from console.api_lanes import run_safety
from engine.errors import InvalidInput
from engine.rule_language import RuleError, parse_window

MAX_WAIT_SECONDS = 300.0
POLL_SECONDS = 0.25


def build_router(gov, auth, metrics, json_response) -> APIRouter:
    router = APIRouter()
    read = [Depends(auth.reader)]
    change, reads = m.CHANGE_ERRORS, m.READ_ERRORS

    @router.post("/api/gate", tags=["agents"], responses=reads, response_model=m.GateAnswer,
                 summary="May this command run autonomously now? allow (with a grant that takes budget), "
                         "needs_approval (queued for a human with request: true) or deny, with the reason")
    async def gate(body: m.GateBody, operator: str | None = Depends(auth.reader)):
        if body.request and operator is None:
            raise HTTPException(401, detail="queueing an action request changes the store: send Authorization: "
                                            "Bearer TOKEN", headers={"WWW-Authenticate": 'Bearer realm="govcon"'})
        started = time.perf_counter()
        decision = await run_safety(  # its own threads and connections: never queued behind reads
            gov.gate.decide, body.commandType, confidence=body.confidence, action_class=body.actionClass,
            service=body.service, agent=body.agent or operator, request=body.request, requested_by=operator)
        metrics.gate_decisions.labels(decision.decision).inc()
        metrics.gate_latency.observe(time.perf_counter() - started)
        return json_response({"budget": None, **decision.to_json()})

    @router.get("/api/gate/decisions", tags=["agents"], dependencies=read, responses=reads,
                response_model=m.DecisionLog,
                summary="The decision log, newest first, and outcomes that name no grant")
    def decisions(since: str = Query("1d", description="30s, 5m, 1h, 7d …"),
                  limit: int = Query(100, ge=1, le=10_000)):
        period = _period(since, "since")
        return json_response(gov.actions.decisions(since=gov.clock.now() - period, limit=limit))

    @router.get("/api/actions", tags=["actions"], dependencies=read, responses=reads, response_model=m.Actions,
                summary="Action requests and grants, newest first (status=pending: waiting requests; "
                        "status=in_flight: grants without an outcome)")
    def actions(status: str | None = Query(None, pattern="^(pending|in_flight)$"),
                limit: int = Query(100, ge=1, le=10_000)):
        return json_response(gov.actions.list(pending=status == "pending", in_flight=status == "in_flight",
                                              limit=limit))

    @router.get("/api/actions/{action_id}", tags=["actions"], dependencies=read, responses=m.ONE_READ_ERRORS,
                response_model=m.Action,
                summary="One request or grant; ?wait=SECONDS long-polls until a pending request is decided")
    async def action(action_id: m.SafeId, wait: float = Query(0, ge=0, le=MAX_WAIT_SECONDS)):
        deadline = time.monotonic() + wait
        while True:
            doc = await run_in_threadpool(gov.actions.show, action_id)
            request = doc["request"]
            if request is None or request["status"] != "pending" or time.monotonic() >= deadline:
                return json_response(doc)
            await asyncio.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))

    @router.post("/api/actions/{action_id}/approve", tags=["actions"], responses=change, response_model=m.Action,
                 summary="Approve a pending request: the agent gets a grant to act once")
    def approve(action_id: m.SafeId, body: m.ActionApproveBody | None = None, actor: str = Depends(auth.changer)):
        return json_response(gov.actions.approve(actor, action_id, body.note if body else None))

    @router.post("/api/actions/{action_id}/reject", tags=["actions"], responses=change, response_model=m.Action,
                 summary="Reject a pending request, with a reason")
    def reject(action_id: m.SafeId, body: m.ActionRejectBody, actor: str = Depends(auth.changer)):
        return json_response(gov.actions.reject(actor, action_id, body.reason))

    @router.get("/api/mode", tags=["overrides"], dependencies=read, responses=reads, response_model=m.ModeState,
                summary="The degradation mode: normal, minimal or read_only")
    def get_mode():
        return json_response(gov.modes.get())

    @router.post("/api/mode", tags=["overrides"], responses=change, response_model=m.ModeAnswer,
                 summary="Set the degradation mode (roles as for engaging / releasing the kill switch)")
    def set_mode(body: m.ModeBody, actor: str = Depends(auth.changer)):
        return json_response(gov.modes.set(actor, body.mode, body.reason))

    return router


def _period(text: str, field: str) -> timedelta:
    try:
        return parse_window(text)
    except RuleError as exc:
        raise InvalidInput(f"{field}: {exc}") from None
