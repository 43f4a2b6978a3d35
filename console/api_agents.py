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

The fast path (``HeartbeatFastPath``, pure ASGI, called by the API's front door, console/front_door.py,
ahead of FastAPI and its middleware): a well-formed beat with a token known to the heartbeat cache is
answered without FastAPI's routing, dependency solving and body model — from the engine's memory on the
event loop when the beat would not be written (``AgentBook.beat_from_memory``), else by ``AgentBook.beat``
in the threadpool. Anything else (no or unknown token, a body that is not ``{}`` or ``{"ttl": N}``, a name
that is not one, an error from the engine) is handed, body and all, to the whole stack, whose route answers
as it always did. Any other change through this server (not GETs, not the gate, not ingest, not a beat) makes
the engine forget the state it answers beats from (``ForgetStateOnChange``, a middleware).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import Field, StrictInt
from starlette.concurrency import run_in_threadpool

from console import api_models as m
from console.asgi_fast import content_length, single_headers
from engine.agents import MAX_TTL, MIN_TTL
from engine.errors import GovconError
from engine.gate import invalid_name
from engine.tokens import token_hash

log = logging.getLogger("govcon.agents")


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


_PREFIX, _SUFFIX = "/api/agents/", "/heartbeat"
_NO_STATE_CHANGE = frozenset({"/api/gate", "/api/events", "/api/integrations/alertmanager"})
_MAX_BODY = 256  # a beat's body is {} or {"ttl": N}: anything longer goes to the route (and its limits)
_HEADERS = [(b"content-type", b"application/json")]
_BEAT_HEADERS = frozenset({b"authorization", b"content-length", b"content-type"})
#: a verified heartbeat token is trusted this long (console/api_auth.py BEAT_CACHE_SECONDS) ...
TRUST_SECONDS = 30.0
#: ... and re-verified, all the tokens used in the last minute in one store read, this often: a token
#: revoked by another process stops beating within about this long (one revoked through this server, at once)
REFRESH_SECONDS = 10.0


def beat_name(scope) -> str | None:
    """The agent's name of a ``POST /api/agents/{name}/heartbeat``; None for any other request."""
    path = scope["path"]
    if scope["method"] == "POST" and path.startswith(_PREFIX) and path.endswith(_SUFFIX):
        return path[len(_PREFIX):-len(_SUFFIX)]
    return None


class ForgetStateOnChange:
    """Pure ASGI middleware: a change through this server (not GET/HEAD/OPTIONS, not the gate, not ingest, not a
    beat) makes the engine forget the state (kill switch, mode) it answers beats from, as the answer starts."""

    def __init__(self, app, *, agents) -> None:
        self.app = app
        self.agents = agents

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS") \
                or scope["path"] in _NO_STATE_CHANGE or beat_name(scope) is not None:
            await self.app(scope, receive, send)  # asks, ingest and beats change no kill switch and no mode
            return
        agents = self.agents

        async def send_then_forget(message) -> None:
            if message["type"] == "http.response.start":
                agents.forget_state()  # before the answer leaves: a beat after it reads the state again
            await send(message)

        await self.app(scope, receive, send_then_forget)


class HeartbeatFastPath:
    """``POST /api/agents/{name}/heartbeat`` answered without the FastAPI route when the beat is ordinary
    (module docstring): ``beat``, called by the front door. ``on_write()`` is called after a beat that went
    through the store (cached reads of the state document show the drain's acknowledgements)."""

    def __init__(self, *, agents, auth, on_write=None) -> None:
        self.agents = agents
        self.auth = auth
        self.on_write = on_write
        # sha256 of a token -> [identity, monotonic verified at, used since the last refresh, last used]
        self._idents: dict[str, list] = {}
        self._refresher: threading.Thread | None = None
        self._lock = threading.Lock()

    async def beat(self, scope, receive, send, name: str, fallback) -> None:
        """Answer the beat of agent ``name`` from memory or through ``AgentBook.beat``; anything else, with what
        was read of it, goes to ``fallback`` (the whole stack, whose route answers it)."""
        headers = single_headers(scope, _BEAT_HEADERS) or {}  # a header twice, or chunked: the route judges it
        secret = None
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() == "bearer":
            secret = token.strip()
        json_type = b"json" in headers.get(b"content-type", b"")
        if not secret or not 0 <= content_length(headers.get(b"content-length")) <= _MAX_BODY or "/" in name \
                or invalid_name(name, "agent"):
            await fallback(scope, receive, send)  # the route says what is wrong (or streams a long body)
            return
        body, messages = b"", []
        while True:  # at most _MAX_BODY bytes, as declared
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > _MAX_BODY or not message.get("more_body", False):
                break
        if messages[-1]["type"] != "http.request":
            return  # the client went away before its body ended: a cut-off beat renews nothing
        reply = await self._answer(secret, name, body, json_type)
        if reply is None:
            await fallback(scope, _replay(messages, receive), send)
            return
        payload = json.dumps(reply, default=str).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_HEADERS, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, secret: str, name: str, body: bytes, json_type: bool) -> dict | None:
        ttl = None
        if body.strip() not in (b"", b"{}"):
            if not json_type:
                return None
            try:
                doc = json.loads(body)
            except ValueError:
                return None
            if not isinstance(doc, dict) or set(doc) - {"ttl"}:
                return None
            ttl = doc.get("ttl")
            if ttl is not None and (type(ttl) is not int or not MIN_TTL <= ttl <= MAX_TTL):
                return None
        ident = await self._identity(secret)
        if ident is None:
            return None
        operator = ident.operator
        bound, token_id = getattr(ident, "agent", None), getattr(ident, "token_id", None)
        reply = self.agents.beat_from_memory(operator, name, ttl=ttl, bound_agent=bound, token_id=token_id)
        if reply is not None:
            return reply
        try:
            reply = await asyncio.get_running_loop().run_in_executor(
                _beat_executor(), functools.partial(self.agents.beat, operator, name, ttl=ttl, bound_agent=bound,
                                                    token_id=token_id))
        except GovconError:  # refused (403, 422, 503 ...): the route answers it as the app's handlers do
            return None
        if self.on_write is not None:
            self.on_write()
        return reply


    async def _identity(self, secret: str):
        """The token's identity from this path's cache (kept verified by ``_refresh``), else through
        ``Auth.beater``; None when the route should answer (no such token, expired, revoked)."""
        tokens = getattr(self.auth, "tokens", None)
        beater = getattr(self.auth, "beater", None)
        if tokens is None or beater is None:
            return None
        key = token_hash(secret)
        mono = time.monotonic()
        hit = self._idents.get(key)
        # a revocation through this server empties TokenBook's cache (TokenBook.forget): not trusted then
        if hit is not None and hit[1] + TRUST_SECONDS > mono and tokens.remembers(key):
            hit[2], hit[3] = True, mono
            ident = hit[0]
        else:
            try:
                ident = await beater(secret)
            except Exception:  # 401: the route says so
                return None
            with self._lock:
                if len(self._idents) > 100_000:
                    self._idents.clear()
                self._idents[key] = [ident, mono, False, mono]
                start = None
                if self._refresher is None:
                    start = self._refresher = threading.Thread(target=self._refresh_loop, args=(tokens,),
                                                               daemon=True, name="govcon-beat-tokens")
            if start is not None:  # started from a pool thread: Thread.start() waits until the new thread runs
                _beat_executor().submit(start.start)
        try:
            return tokens.check(ident)  # expiry, judged on every beat by the injected clock
        except Exception:
            return None

    def _refresh_loop(self, tokens) -> None:
        """Every REFRESH_SECONDS: re-verify the tokens used in the last minute in one read, forget the
        rest; the thread ends when none is left (the next miss starts it again)."""
        failed = False
        while True:
            time.sleep(REFRESH_SECONDS)
            started = time.monotonic()
            with self._lock:
                for key in [k for k, v in self._idents.items() if v[3] + 60.0 < started]:
                    del self._idents[key]
                if not self._idents:
                    self._refresher = None
                    return
                keys = list(self._idents)
                used = {k for k in keys if self._idents[k][2]}
            try:
                live = tokens.verify_hashes(keys, used)
            except Exception as exc:  # entries age out after TRUST_SECONDS: beats then go through Auth.beater
                (log.debug if failed else log.warning)("could not re-verify heartbeat tokens: %s", exc)
                failed = True
                continue
            failed = False
            with self._lock:
                for key in keys:
                    entry = self._idents.get(key)
                    if entry is None:
                        continue
                    if key in live:
                        entry[0], entry[1] = live[key], started
                        entry[2] = entry[2] and key not in used
                    else:  # revoked or gone: its next beat is refused by the route
                        del self._idents[key]


_executor: ThreadPoolExecutor | None = None
#: threads for beats that go through the store: a pool whose threads never end, unlike anyio's (which end after
#: 10 s idle and are started again on the event loop — a thread's start waits there until the OS runs it, on a
#: loaded machine for tens of milliseconds)
BEAT_THREADS = 4


def _beat_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(BEAT_THREADS, thread_name_prefix="govcon-beat")
    return _executor


def _replay(messages: list, receive):
    """A receive that gives the messages already read, then the real ones."""
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive()
    return replayed
