"""The API's front door: the three hot requests answered ahead of FastAPI and every middleware.

``GovconAPI.__call__`` (console/api.py) hands every request to ``FrontDoor`` first. Single events
(``POST /api/events``, console/api_ingest.py ``IngestFastPath``), plain gate asks (``POST /api/gate``,
console/api_actions.py ``GateFastPath``) and heartbeats (``POST /api/agents/{name}/heartbeat``,
console/api_agents.py ``HeartbeatFastPath.beat``) go to their fast paths; everything else — and whatever a
fast path declines, with what it read of the request — goes to ``app``, FastAPI with its middleware, which
answers it as it always has.

Those layers cost a single-event request more than its own work did (FastAPI's body limit and telemetry,
the error middleware, govcon's five middlewares each wrapping ``send`` again, routing: docs/performance.md,
"Fourteenth session"), so what they check for these requests is checked here or by the fast path: the Host
of a loopback bind (``limits.host_allowed``: a request for another host goes to the stack, whose HostCheck
refuses it), the body limit (each fast path reads only a declared Content-Length within its endpoint's limit)
and the refresh of cached reads before a change's answer leaves (each fast path's ``on_change``).
"""

from __future__ import annotations

from typing import Any

from console.api_agents import beat_name
from console.limits import host_allowed


class FrontDoor:
    def __init__(self, app, *, ingest=None, gate=None, beats=None, gate_max_body: int = 0,
                 allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app  # the whole stack
        self.ingest = ingest  # IngestFastPath, or None
        self.gate = gate  # GateFastPath, or None
        self.beats = beats  # HeartbeatFastPath, or None
        self.gate_max_body = gate_max_body
        self.allowed_hosts = allowed_hosts  # None: no Host check (a server not bound to loopback)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" \
                and (self.allowed_hosts is None or host_allowed(scope, self.allowed_hosts)):
            path = scope["path"]
            if path == "/api/events" and self.ingest is not None:
                await self.ingest(scope, receive, send)
                return
            if path == "/api/gate" and self.gate is not None and _length(scope, self.gate_max_body):
                await self.gate(scope, receive, send)
                return
            if self.beats is not None and (name := beat_name(scope)) is not None:
                await self.beats.beat(scope, receive, send, name, self.app)
                return
        await self.app(scope, receive, send)


def _length(scope: dict[str, Any], limit: int) -> bool:
    """A declared Content-Length within ``limit`` and no Transfer-Encoding (else the stack's BodyLimit judges it)."""
    ok = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            ok = value.isdigit() and int(value) <= limit
        elif name == b"transfer-encoding":
            return False
    return ok
