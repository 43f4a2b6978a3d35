"""What the plain-ASGI fast paths share (POST /api/gate in console/api_actions.py, POST /api/events in
console/api_ingest.py): read a request's whole body, and hand the request on — with what was read — to the
FastAPI route (or the app) that answers everything a fast path does not."""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]
_JSON = b"application/json"
#: the answer to an error nobody handled (console/api.py's handler of last resort, and the front door's)
INTERNAL_ERROR = {"error": "internal", "detail": "internal error; the server log has the details"}


async def send_json(send, doc: Any, status: int = 200) -> None:
    """``doc`` as console.api.json_response answers it (the same body and headers), sent without building a
    Starlette Response: a fast path's answer."""
    body = json.dumps(doc, default=str).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive, limit: int) -> tuple[bytes | None, Message | None]:
    """``(body, None)``, or ``(None, message)`` when a message other than the body's (the client went away)
    ended it: that message is for whoever answers the request. Reading stops at the first chunk past
    ``limit`` bytes (the server's framing keeps a body to its declared length, which the fast paths have
    judged already; this does not rely on it): the caller hands such a body to the stack, whose BodyLimit
    refuses it."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, message
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False) or size > limit:
            return b"".join(chunks), None


def single_headers(scope, names: frozenset[bytes]) -> dict[bytes, bytes] | None:
    """The values of ``names`` among a request's headers; None when one of them comes twice or the body is
    chunked (Transfer-Encoding). A fast path hands such a request to the whole stack, which judges it as it
    always has (its first header counts there; a chunked body is counted as it arrives)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return None
        if name in names:
            if name in found:
                return None
            found[name] = value
    return found


def content_length(value: bytes | None) -> int:
    """A Content-Length header's value; -1 when absent or not a plain number of at most 15 digits."""
    return int(value) if value is not None and value.isdigit() and len(value) <= 15 else -1


def replay(body: bytes | None, last: Message | None, receive):
    """A ``receive`` that gives what ``read_body`` read (the whole body, or the message that ended it) once,
    then hands on to the connection's own ``receive``."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}] if last is None else [last]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()
    return replayed
