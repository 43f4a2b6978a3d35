"""``POST /api/rpc``: client mode over HTTP(S) (``GOVCON_SERVER=https://host:4007`` with ``GOVCON_TOKEN``).

The same calls as the Unix socket (console/rpc_server.py); the caller is the bearer token's operator. The
request body is one JSON request object; the answer is a frame (console/rpc.py: a 4-byte length and the
JSON answer) followed by any binary the answer announces (a backup's copy).
"""

from __future__ import annotations

import functools
import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from console import api_models as m
from console.rpc import dumps
from console.rpc_server import RpcService, _remove
from engine.tokens import TokenIdentity


def build_router(gov, auth, address: str = "the HTTP API") -> APIRouter:
    router = APIRouter()
    service = RpcService(gov, address=address)

    @router.post("/api/rpc", tags=["client mode"], response_class=Response,
                 responses={**m.CHANGE_ERRORS, **m.text_answer(
                     "application/octet-stream", "one frame: a 4-byte big-endian length and that much JSON (the "
                     "answer, or the error with its exit code), then any bytes it announces", format="binary")},
                 summary="A call of the CLI or console in client mode (GOVCON_SERVER=https://…): the token's "
                         "operator is the caller")
    async def rpc(request: Request, caller: TokenIdentity = Depends(auth.change_identity)):
        try:
            doc = json.loads(await request.body())
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            doc = None
        if not isinstance(doc, dict):
            return Response(dumps({"e": {"type": "InvalidInput", "message": "the body must be one JSON request "
                                         "object", "exitCode": 2}}), media_type="application/octet-stream")
        frame, binary = await run_in_threadpool(functools.partial(service.answer, agent=caller.agent),
                                                caller.operator, doc)
        if binary is None:
            return Response(dumps(frame), media_type="application/octet-stream")
        size = binary.stat().st_size

        def body():
            try:
                yield dumps({**frame, "bin": size})
                with binary.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        yield chunk
            finally:
                _remove(binary)
        return StreamingResponse(body(), media_type="application/octet-stream")

    return router
