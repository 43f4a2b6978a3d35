"""HTTP routes of governed actions (DESIGN.md v2): the gate, action requests, the decision log, modes.

POST /api/gate answers without a token on loopback (as every read does), and then grants to the agent
named in the body; with a token the asker is the token's operator. Queueing an action request
(``"request": true``) pages people, so it needs a token, like every change.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from console import api_models as m
from console.api_lanes import run_safety
from console.asgi_fast import read_body, replay, send_json
from engine.errors import InvalidInput, PermissionDenied
from engine.rule_language import RuleError, parse_window
from engine.tokens import TokenIdentity

MAX_WAIT_SECONDS = 300.0
POLL_SECONDS = 0.25


def build_router(gov, auth, metrics, json_response) -> APIRouter:
    router = APIRouter()
    read = [Depends(auth.reader)]
    change, reads = m.CHANGE_ERRORS, m.READ_ERRORS

    @router.post("/api/gate", tags=["agents"], responses=reads, response_model=m.GateAnswer,
                 summary="May this command run autonomously now? allow (with a grant that takes budget), "
                         "needs_approval (queued for a human with request: true) or deny, with the reason")
    async def gate(body: m.GateBody, caller: TokenIdentity | None = Depends(auth.asker)):
        operator = caller.operator if caller is not None else None
        if body.request and operator is None:
            raise HTTPException(401, detail="queueing an action request changes the store: send Authorization: "
                                            "Bearer TOKEN", headers={"WWW-Authenticate": 'Bearer realm="govcon"'})
        bound = caller.agent if caller is not None else None
        if bound is not None and body.agent is not None and body.agent != bound:
            # a token bound to an agent speaks for that agent only (its lease, its grants), as its heartbeats do
            raise PermissionDenied(f"the token of {operator} is bound to agent {bound}; it cannot ask the gate for "
                                   f"agent {body.agent}")
        started = time.perf_counter()
        decision = await run_safety(  # its own threads and connections: never queued behind reads
            gov.gate.decide, body.commandType, confidence=body.confidence, action_class=body.actionClass,
            service=body.service, agent=body.agent or bound or operator, request=body.request,
            requested_by=operator)
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


#: answer POST /api/gate's plain asks (loopback reads without a token, a JSON body, no ``request``) with
#: ``GateFastPath`` at the front door; False: every ask goes through the FastAPI route (tests compare the two)
FAST_GATE = True


class GateFastPath:
    """POST /api/gate's plain ask answered at the app's front door (console/front_door.py, issue 12 "Speed"): an
    agent on loopback without a token, ``Content-Type: application/json``, a body GateBody accepts, no
    ``request``. It parses and validates the body as the route does (``json.loads``, then ``GateBody`` — strict,
    no extra fields) and answers with the same call and the same document, so the answer is byte for byte the
    route's (a test compares them); it skips FastAPI, its middleware and govcon's (the front door has done their
    Host check and body limit; ``on_change`` is their refresh of cached reads) and the route's per-request work
    (the request object, dependency solving, the body field's validation wrapper). Anything else — a token,
    another content type, a body the model refuses, ``request: true``, a server that needs tokens for reads —
    is handed, with its body, to ``fallback`` (the whole stack), which answers it (401, 422 …) as before."""

    def __init__(self, gov, auth, metrics, *, fallback, max_body: int, on_change=None) -> None:
        self.gov, self.auth, self.metrics = gov, auth, metrics
        self.fallback = fallback
        self.max_body = max_body  # the JSON bodies' limit (console/limits.py BodyLimit)
        self.on_change = on_change

    async def __call__(self, scope, receive, send) -> None:
        raw, ended = await read_body(receive, self.max_body)
        body = None if raw is None or len(raw) > self.max_body else self._plain(scope, raw)
        if body is None:  # the client went away, or not the plain ask: the route answers
            return await self.fallback(scope, replay(raw, ended, receive), send)
        started = time.perf_counter()  # from here as the route: operator None, request False
        decision = await run_safety(self.gov.gate.decide, body.commandType, confidence=body.confidence,
                                    action_class=body.actionClass, service=body.service, agent=body.agent or None,
                                    request=body.request, requested_by=None)
        self.metrics.gate_decisions.labels(decision.decision).inc()
        self.metrics.gate_latency.observe(time.perf_counter() - started)
        if self.on_change is not None:
            self.on_change()  # before the answer leaves (an allow's grant is in the state document)
        await send_json(send, {"budget": None, **decision.to_json()})

    def _plain(self, scope, raw: bytes) -> m.GateBody | None:
        if self.auth.require_for_reads:
            return None
        content_type = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                return None
            if key == b"content-type":
                if content_type is not None:
                    return None
                content_type = value
        if content_type != b"application/json":
            return None
        try:
            body = m.GateBody.model_validate(json.loads(raw))
        except Exception:  # the route answers it (422 with its own words)
            return None
        return None if body.request else body


#: the longest look back a query takes (a larger one reached before the year 1: a 500)
MAX_PERIOD = timedelta(days=36_500)


def _period(text: str, field: str) -> timedelta:
    try:
        period = parse_window(text)
    except RuleError as exc:
        raise InvalidInput(f"{field}: {exc}") from None
    if period > MAX_PERIOD:
        raise InvalidInput(f"{field}: {text} is more than {MAX_PERIOD.days:,} days")
    return period
