"""HTTP routes of agents and their leases (DESIGN.md "Agents and leases"): the list, one agent, and the
heartbeat that renews a lease.

A heartbeat needs a token. The token names the agent it may beat for: its agent binding
(``govcon tokens create USER --agent NAME``, read through ``TokenBook.identify``), or, for a token bound
to no agent, its operator's name. A beat for any other agent is a 403 naming both. The body's only field
is ``ttl`` (seconds, bounded); anything the agent says about time is not asked for: the store's clock
judges the lease.

Heartbeats run in the shared threadpool on the default lane, not on the safety lane the gate and the kill
switch keep to themselves: a late beat fails safe (its lease lapses, the agent's asks need approval), and
100 beats a second must not take the gate's connections.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import Field, StrictInt
from starlette.concurrency import run_in_threadpool

from console import api_models as m
from engine.agents import MAX_TTL, MIN_TTL


class HeartbeatBody(m._Body):
    ttl: StrictInt | None = Field(None, ge=MIN_TTL, le=MAX_TTL,
                                  description=f"lease length in seconds ({MIN_TTL}..{MAX_TTL}; default 60)")


def build_router(gov, auth, json_response) -> APIRouter:
    router = APIRouter()
    read = [Depends(auth.reader)]
    change, reads = m.CHANGE_ERRORS, m.READ_ERRORS

    @router.get("/api/agents", tags=["agents"], dependencies=read, responses=reads, response_model=m.Agents,
                summary="Agents and their leases: live or lapsed, last beat, grants in flight")
    def agents():
        return json_response(gov.agents.list())

    @router.get("/api/agents/{name}", tags=["agents"], dependencies=read, responses=m.ONE_READ_ERRORS,
                response_model=m.AgentDetail,
                summary="One agent: its lease, last beat, token, and the grants it holds in flight")
    def agent(name: m.SafeId):
        return json_response(gov.agents.show(name))

    @router.post("/api/agents/{name}/heartbeat", tags=["agents"], responses=change, response_model=m.Heartbeat,
                 summary="Renew the agent's lease (its first beat registers it); the reply says whether it may "
                         "act: autonomy granted or suspended, reason, killSwitch, mode, leaseExpiresAt")
    async def heartbeat(name: m.SafeId, body: HeartbeatBody | None = None,
                        creds: HTTPAuthorizationCredentials | None = Depends(auth.scheme)):
        secret = creds.credentials if creds else None
        ident = await auth.beater(secret) if hasattr(auth, "beater") else None  # 401 without a live token
        if ident is not None and hasattr(ident, "agent"):
            operator, bound, token_id = ident.operator, ident.agent, ident.token_id
        else:
            operator = ident.operator if ident is not None else await auth._operator(
                secret, "a heartbeat renews a lease", safety=False)
            bound, token_id = await _binding(auth.tokens, secret, operator)
        return json_response(await run_in_threadpool(gov.agents.beat, operator, name,
                                                     ttl=body.ttl if body else None, bound_agent=bound,
                                                     token_id=token_id))

    return router


async def _binding(tokens, secret: str | None, operator: str) -> tuple[str | None, str | None]:
    """(the agent the token is bound to, its id), from ``TokenBook.identify`` where it exists; (None, None)
    for a token bound to no agent, which beats for the agent named as its operator."""
    identify = getattr(tokens, "identify", None)
    if identify is None or not secret:
        return None, None
    ident = tokens.cached(secret)  # auth has just looked the token up: usually no second store read
    if not hasattr(ident, "agent") or ident.expired(tokens.clock.now()):
        ident = await run_in_threadpool(identify, secret)
    if ident is None:
        return None, None
    return getattr(ident, "agent", None), getattr(ident, "token_id", None) or getattr(ident, "id", None)
