"""Bearer-token authentication for the HTTP API: tokens -> operators, and who must show one.

Changes always need a token; reads only when the server is not bound to loopback. A bad token is refused
even where none is needed; an expired one with a 401 saying when it expired (judged by the injected clock).
Tokens come from TokenBook's short cache, so the event loop answers most requests without a store read;
misses go to a thread.
"""

from __future__ import annotations

import time

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DatabaseError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from console.api_lanes import run_safety
from engine.tokens import MISS, TokenBook, TokenExpired, TokenIdentity, token_hash
from storage.db import StoreUnavailable

#: how long a heartbeat's verified token is kept (``Auth.beater``): longer than an agent's beat interval
BEAT_CACHE_SECONDS = 30.0


class Auth:
    """Bearer tokens -> operators. ``changer`` for changes, ``reader`` for reads, ``ingester`` for ingest."""

    scheme = HTTPBearer(auto_error=False, description="a token from `govcon tokens create USER`")

    def __init__(self, gov, tokens: TokenBook, *, require_for_reads: bool) -> None:
        self.gov = gov
        self.tokens = tokens
        self.require_for_reads = require_for_reads
        self._may_ingest: dict[str, float] = {}  # operator -> monotonic expiry of a passed role check
        self._may_ask: dict[str, float] = {}  # the same, for the gate
        self._beats: dict[str, tuple[float, TokenIdentity | None]] = {}  # token sha256 -> (expiry, identity)

    async def _operator(self, secret: str | None, why: str, *, safety: bool = True,
                        remembered: bool = False) -> str:
        return (await self._identity(secret, why, safety=safety, remembered=remembered)).operator

    async def _identity(self, secret: str | None, why: str, *, safety: bool = True,
                        remembered: bool = False) -> TokenIdentity:
        """The token's identity; a cache miss is verified on the safety executor for changes (so a
        kill switch never waits behind reads) and in the shared threadpool for reads. ``remembered``: when the
        store cannot be read, the identity it last confirmed in this process (``TokenBook.last_known``)."""
        if not secret:
            raise _unauthorized(f"{why}: send Authorization: Bearer TOKEN (an admin creates one with "
                                "`govcon tokens create USER`)")
        ident = self.tokens.cached(secret)
        if ident is MISS:
            try:
                ident = await (run_safety if safety else run_in_threadpool)(self.tokens.lookup, secret)
            except (StoreUnavailable, DatabaseError):  # unreachable, locked, or corrupt (DatabaseError)
                ident = self.tokens.last_known(secret) if remembered else None
                if ident is None:
                    raise
        try:
            ident = self.tokens.check(ident)  # judged by the injected clock, cached or not
        except TokenExpired as exc:
            raise _unauthorized(str(exc)) from None
        if ident is None:
            raise _unauthorized("the bearer token is unknown or revoked")
        return ident

    async def beater(self, secret: str | None) -> TokenIdentity:
        """The identity (engine.tokens.TokenIdentity) of a heartbeat's token. Verified tokens are kept for
        BEAT_CACHE_SECONDS, longer than an agent's beat interval (TokenBook's own cache of a few seconds
        misses every beat of an agent beating every 10 s, a store read each): a revoked token can keep
        its lease alive that much longer when it is revoked by another process (a revocation through this
        service is seen at once), and never grants anything (the gate and every change verify tokens through
        TokenBook). Expiry is still judged on every beat, by the injected clock."""
        if not secret:
            raise _unauthorized("a heartbeat renews a lease: send Authorization: Bearer TOKEN (an admin creates "
                                "one with `govcon tokens create USER`)")
        key = token_hash(secret)
        hit = self._beats.get(key)
        # a revocation in this process empties TokenBook's cache (TokenBook.forget): a kept identity whose
        # token is no longer in it is looked up again, so the revoked token's next beat is refused
        if hit is not None and hit[0] > time.monotonic() and self.tokens.remembers(key):
            ident = hit[1]
        else:
            cached = self.tokens.cached(secret)
            ident = await run_in_threadpool(self.tokens.lookup, secret) if cached is MISS else cached
            if ident is not None:
                if len(self._beats) > 100_000:
                    self._beats.clear()
                self._beats[key] = (time.monotonic() + BEAT_CACHE_SECONDS, ident)
        try:
            ident = self.tokens.check(ident)
        except TokenExpired as exc:
            raise _unauthorized(str(exc)) from None
        if ident is None:
            raise _unauthorized("the bearer token is unknown or revoked")
        return ident

    async def changer(self, creds: HTTPAuthorizationCredentials | None = Depends(scheme)) -> str:
        return await self._operator(creds.credentials if creds else None, "this call changes the store")

    async def change_identity(self, creds: HTTPAuthorizationCredentials | None = Depends(scheme)) -> TokenIdentity:
        """``changer``'s whole identity: the operator and the agent the token is bound to (POST /api/rpc)."""
        return await self._identity(creds.credentials if creds else None, "this call changes the store")

    async def kill_switcher(self, creds: HTTPAuthorizationCredentials | None = Depends(scheme)) -> str:
        """``changer`` for POST /api/kill-switch: when the store cannot be read to check the token, a token it
        confirmed earlier in this process still identifies its operator, so that an engage reaches the marker
        file (engine/overrides.py). A release, a drill and every other change need the store anyway."""
        return await self._operator(creds.credentials if creds else None, "this call changes the store",
                                    remembered=True)

    async def asker(self, creds: HTTPAuthorizationCredentials | None = Depends(scheme)) -> TokenIdentity | None:
        """POST /api/gate's caller: the token's identity (its operator, and the agent it is bound to), or None
        without a token where reads need none (loopback). A token's operator must hold a role (``gate.ask``, as
        on the socket): a roleless token could otherwise queue action requests, which page approvers. The role
        check is kept as the ingest's is (``tokens.cache_seconds``)."""
        if not (self.require_for_reads or creds is not None):
            return None
        ident = await self._identity(creds.credentials if creds else None,
                                     "this server is not on loopback, so reads need a token too", safety=False)
        if self._may_ask.get(ident.operator, 0.0) <= time.monotonic():
            await run_safety(self.gov.require, ident.operator, "gate.ask")  # PermissionDenied -> 403
            self._may_ask[ident.operator] = time.monotonic() + self.tokens.cache_seconds
        return ident

    async def reader(self, creds: HTTPAuthorizationCredentials | None = Depends(scheme)) -> str | None:
        if self.require_for_reads or creds is not None:
            return await self._operator(creds.credentials if creds else None,
                                        "this server is not on loopback, so reads need a token too", safety=False)
        return None

    async def ingester(self, request: Request) -> str:
        """Called by POST /api/events itself: as a dependency it cost a fifth of a single-event request."""
        return await self.ingest_operator(request.headers.get("authorization", ""))

    async def ingest_operator(self, authorization: str) -> str:
        """The operator of an ``Authorization`` header's bearer token, if it may ingest (401 or 403 if not)."""
        scheme, _, secret = authorization.partition(" ")
        operator = await self._operator(secret.strip() if scheme.lower() == "bearer" else None,
                                        "ingesting changes the store")
        if self._may_ingest.get(operator, 0.0) <= time.monotonic():
            await run_safety(self.gov.require, operator, "ingest")  # PermissionDenied -> 403
            self._may_ingest[operator] = time.monotonic() + self.tokens.cache_seconds
        return operator


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": 'Bearer realm="govcon"'})
