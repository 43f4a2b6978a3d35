"""Pure ASGI middleware of `govcon serve`: request body limits, a per-client rate limit for reads
without a token, the Host check of loopback binds, and the hook that refreshes cached reads after a change.

Body limits are enforced while the body arrives: a declared Content-Length over the limit is refused
with 413 before a byte of the body is read; a body without one (chunked) is counted as it streams in,
and reading stops at the first chunk past the limit.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(limit: int) -> str:
    return (f"the request body is larger than this endpoint's limit of {limit:,} bytes: "
            "send fewer events per request")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, default: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, detail=_too_large(limit))
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"error": "content_too_large", "detail": _too_large(limit), "limit": limit}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# --- per-client rate limit for open reads ------------------------------------------------------


class TokenBuckets:
    """A token bucket per key: ``rate`` tokens a second, up to ``burst``. ``take`` answers 0 when a
    token was taken, else the seconds until one will be there."""

    MAX_KEYS = 10_000

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a read rate limit needs a positive rate and a burst of at least 1 "
                             f"(got {rate}/s, burst {burst})")
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[Any, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: Any) -> float:
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
                self._forget_full(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they hold no history worth keeping); all, if none has."""
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.rate >= self.burst]
        for k in full or list(self._buckets):
            del self._buckets[k]


class ReadRateLimit:
    """Reads without a token (GET/HEAD, no Authorization header) are limited per client address: 429
    with Retry-After when its bucket is empty. /health has a bucket of its own per client, so a load
    balancer's probe is not refused because a dashboard on the same host polls hard. A refused read is
    held ``hold`` seconds before its 429 goes out. Requests with a token are not limited here (a wrong
    token is refused by the route)."""

    def __init__(self, app: ASGIApp, *, rate: float, burst: int, hold: float = 1.0) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst)
        self.hold = hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or _has_header(scope, b"authorization"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        host = client[0] if client else "?"
        wait = self.buckets.take((host, scope["path"] == "/health"))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        # held before it is answered (no thread, no connection to the store): a client that ignores
        # Retry-After costs the event loop one request a second per connection, not thousands
        await asyncio.sleep(self.hold)
        retry = max(1, math.ceil(wait - self.hold))
        await _send_json(send, 429, {"error": "too_many_requests",
                                     "detail": f"too many reads without a token from {host}: at most "
                                               f"{self.buckets.rate:g} a second (bursts of {self.buckets.burst}); "
                                               f"retry after {retry} s, or send a bearer token"},
                         extra_headers=[(b"retry-after", str(retry).encode())])


# --- Host header on loopback binds (DNS rebinding) ----------------------------------------------

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(value: str) -> str:
    """The name part of a Host header: ``[::1]:4007`` -> ``::1``, ``Example.COM:80`` -> ``example.com``."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    name, _, port = value.rpartition(":")
    return name if name and port.isdigit() else value


def allowed_host_names(extra: frozenset[str]) -> frozenset[str]:
    """The Host names a loopback bind serves: the loopback names and ``extra`` ([serve] allowed_hosts)."""
    return LOOPBACK_HOSTS | {host_name(h) for h in extra}


def host_allowed(scope: Scope, allowed: frozenset[str]) -> bool:
    """Whether HostCheck serves this request: no Host header (HTTP/1.0, no browser), or one of ``allowed``."""
    raw = _header(scope, b"host")
    return raw is None or host_name(raw.decode("latin-1")) in allowed


class HostCheck:
    """On a server bound to loopback, only requests naming a loopback host (any port) are served, and
    the names in ``extra``: a web page that rebinds its own DNS name to 127.0.0.1 sends its own name,
    and is refused with 421. A request without a Host header (HTTP/1.0, no browser) is served."""

    def __init__(self, app: ASGIApp, *, extra: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.allowed = allowed_host_names(extra)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or host_allowed(scope, self.allowed):
            await self.app(scope, receive, send)
            return
        shown = (_header(scope, b"host") or b"").decode("latin-1")
        names = ", ".join(sorted(self.allowed))
        await _send_json(send, 421, {"error": "misdirected_request",
                                     "detail": f"Host {shown[:200]!r} is not served here: this server is bound to "
                                               f"loopback and answers requests for {names} only (add a name to "
                                               "[serve] allowed_hosts in the config file)"})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _has_header(scope: Scope, name: bytes) -> bool:
    return _header(scope, name) is not None


async def _send_json(send: Send, status: int, doc: dict[str, Any],
                     extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(extra_headers or [])]})
    await send({"type": "http.response.body", "body": body})


# --- changes made through this server refresh the cached reads ---------------------------------


class AfterChanges:
    """Calls ``on_change(path)`` when a request that may change something (not GET/HEAD/OPTIONS) has
    been answered, so cached reads are recomputed before they are served again."""

    def __init__(self, app: ASGIApp, *, on_change: Callable[[str], None]) -> None:
        self.app = app
        self.on_change = on_change

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return

        async def send_then_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.on_change(scope["path"])  # before the answer leaves: a read after it is fresh
            await send(message)

        await self.app(scope, receive, send_then_note)
