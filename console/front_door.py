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

import functools
import logging
from typing import Any

from console.api_agents import beat_name
from console.asgi_fast import INTERNAL_ERROR, content_length, send_json, single_headers
from console.limits import host_allowed

log = logging.getLogger("govcon.serve")


class FrontDoor:
    def __init__(self, app, *, ingest=None, gate=None, beats=None,
                 allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app  # the whole stack
        self.ingest = ingest  # IngestFastPath, or None
        self.gate = gate  # GateFastPath, or None
        self.beats = beats  # HeartbeatFastPath, or None
        self.allowed_hosts = allowed_hosts  # None: no Host check (a server not bound to loopback)

    async def __call__(self, scope, receive, send) -> None:
        fast = self._fast_path(scope)
        if fast is None:
            await self.app(scope, receive, send)
            return
        tracked = _Tracked(send)
        try:
            await fast(scope, receive, tracked)
        except Exception:  # as the stack's handler of last resort answers it (console/api.py)
            if tracked.started:
                raise  # the answer had begun (the stack's error middleware answered and logged it): it ends
            log.error("unhandled error at the front door", exc_info=True)
            await send_json(send, INTERNAL_ERROR, 500)

    def _fast_path(self, scope):
        """The fast path that takes this request, or None (the stack answers it)."""
        if scope["type"] != "http" or scope["method"] != "POST" \
                or (self.allowed_hosts is not None and not host_allowed(scope, self.allowed_hosts)):
            return None
        path = scope["path"]
        if path == "/api/events":
            return self.ingest
        if path == "/api/gate":
            return self.gate if self.gate is not None and _length(scope, self.gate.max_body) else None
        if self.beats is not None and (name := beat_name(scope)) is not None:
            return functools.partial(self._beat, name)
        return None

    async def _beat(self, name: str, scope, receive, send) -> None:
        await self.beats.beat(scope, receive, send, name, self.app)


class _Tracked:
    """``send``, remembering whether the answer has started (the stack's error middleware knows that too)."""

    __slots__ = ("send", "started")

    def __init__(self, send) -> None:
        self.send, self.started = send, False

    async def __call__(self, message) -> None:
        self.started = True
        await self.send(message)


def _length(scope: dict[str, Any], limit: int) -> bool:
    """One declared Content-Length within ``limit``, and no Transfer-Encoding (else the stack's BodyLimit judges
    the body)."""
    headers = single_headers(scope, _LENGTH)
    return headers is not None and 0 <= content_length(headers.get(b"content-length")) <= limit


_LENGTH = frozenset({b"content-length"})
