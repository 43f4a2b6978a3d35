"""The wire format between a govcon client (the CLI or the console with ``GOVCON_SERVER``) and the
service (``govcon serve --socket``; ``POST /api/rpc`` over HTTP): frames of JSON, stdlib only so that a
client process imports nothing heavy to speak it.

A frame is a 4-byte big-endian length and that many bytes of JSON. A request is
``{"m": METHOD, "a": [ARGS], "k": {KWARGS}}``; the answer ``{"r": RESULT}`` or
``{"e": {"type": NAME, "message": TEXT, "exitCode": N}}``. An answer may carry ``"bin": N``: N raw bytes
follow the frame (a backup's copy, streamed to the client, which writes it with its own rights).

Values beyond JSON are tagged: ``{"$dt": ISO}`` (datetime), ``{"$td": SECONDS}`` (timedelta),
``{"$set": [...]}``, ``{"$tuple": [...]}``, ``{"$b": BASE64}``, ``{"$dict": [[K, V], ...]}`` (a dict
with keys that are not plain strings, or that begin with ``$``), and ``{"$dc": "module:Class", "f":
{...}}`` — an engine dataclass (a GateDecision, an OverrideResult, a ReadinessReport …), rebuilt by the
client only for dataclasses of govcon's own ``engine``/``screens`` modules (``allow_classes``). The
service never rebuilds a class from what a client sends: it decodes plain values only.
"""

from __future__ import annotations

import json
import struct

TYPE_CHECKING = False  # not typing's: importing typing costs `govcon gate` milliseconds (mypy knows the name)
if TYPE_CHECKING:
    from io import BufferedIOBase
    from typing import Any, BinaryIO

# datetime, base64, dataclasses and importlib are imported where a tagged value needs them: `govcon gate`
# (console/gate_cli.py) speaks frames of plain values and should not pay for them at start-up

MAX_FRAME = 64 * 1024 * 1024  # a frame longer than this is not govcon talking: the connection is dropped
#: a frame's body is read in pieces of at most this: what a peer announces is never reserved before it arrives
#: (a peer announcing MAX_FRAME and sending nothing more costs nothing; console/rpc_server.py reads the socket's
#: frames with deadlines and a smaller limit for callers not known to hold a role)
FRAME_CHUNK = 1024 * 1024
_LEN = struct.Struct(">I")
CLASS_MODULES = ("engine.", "screens.", "storage.audit")  # AuditProblem: the audit screen's verify


class ProtocolError(Exception):
    pass


def encode(value: Any) -> Any:
    """A JSON-able tree of ``value`` (tags above)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(type(k) is str and not k.startswith("$") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"$set": [encode(v) for v in value]}
    import dataclasses
    from datetime import datetime, timedelta
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$td": value.total_seconds()}
    if isinstance(value, bytes):
        import base64
        return {"$b": base64.b64encode(value).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"$dc": f"{cls.__module__}:{cls.__qualname__}",
                "f": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"cannot send a {type(value).__name__} to or from the govcon service")


def decode(value: Any, *, allow_classes: bool = False) -> Any:
    if isinstance(value, list):
        return [decode(v, allow_classes=allow_classes) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 or "$dc" in value:
        tag = next(iter(value))
        if tag == "$dt":
            from datetime import datetime
            return datetime.fromisoformat(value[tag])
        if tag == "$td":
            from datetime import timedelta
            return timedelta(seconds=value[tag])
        if tag == "$tuple":
            return tuple(decode(v, allow_classes=allow_classes) for v in value[tag])
        if tag == "$set":
            return frozenset(decode(v, allow_classes=allow_classes) for v in value[tag])
        if tag == "$b":
            import base64
            return base64.b64decode(value[tag])
        if tag == "$dict":
            return {decode(k, allow_classes=allow_classes): decode(v, allow_classes=allow_classes)
                    for k, v in value[tag]}
        if "$dc" in value:
            if not allow_classes:
                raise ProtocolError("a client may send plain values only, not objects")
            return _rebuild(value["$dc"], {k: decode(v, allow_classes=True) for k, v in value["f"].items()})
    return {k: decode(v, allow_classes=allow_classes) for k, v in value.items()}


def _rebuild(name: str, fields: dict[str, Any]) -> Any:
    import dataclasses
    import importlib
    module, _, qualname = name.partition(":")
    if not module.startswith(CLASS_MODULES) or "." in qualname:
        raise ProtocolError(f"the service sent an object of an unexpected type {name!r}")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ProtocolError(f"the service sent an object of an unexpected type {name!r}")
    obj = cls.__new__(cls)
    for key, val in fields.items():
        object.__setattr__(obj, key, val)
    return obj


def dumps(doc: dict[str, Any]) -> bytes:
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return _LEN.pack(len(body)) + body


def read_frame(stream: BinaryIO | BufferedIOBase, limit: int = MAX_FRAME) -> dict[str, Any] | None:
    """The next frame's JSON; None at a clean end of the connection. The body is read as it arrives, in
    pieces of FRAME_CHUNK: memory follows what came, not what the length announced."""
    head = stream.read(4)
    if not head:
        return None
    if len(head) < 4:
        raise ProtocolError("the connection ended inside a frame")
    (size,) = _LEN.unpack(head)
    check_size(size, limit)
    if size <= FRAME_CHUNK:
        body = stream.read(size)
    else:
        parts: list[bytes] = []
        left = size
        while left:
            part = stream.read(min(left, FRAME_CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        body = b"".join(parts)
        del parts
    if len(body) < size:
        raise ProtocolError("the connection ended inside a frame")
    return load_body(body)


def check_size(size: int, limit: int = MAX_FRAME) -> None:
    if size > limit:
        raise ProtocolError(f"a frame of {size:,} bytes is more than the {limit:,} allowed")


def load_body(body: bytes | bytearray) -> dict[str, Any]:
    """A frame's body (its bytes after the length) as the JSON object it must hold."""
    try:
        doc = json.loads(body)
    except RecursionError:  # nested deeper than the parser goes: not govcon talking
        raise ProtocolError("a frame's JSON is nested too deeply") from None
    if not isinstance(doc, dict):
        raise ProtocolError("a frame must hold a JSON object")
    return doc


def error_doc(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc), "exitCode": getattr(exc, "exit_code", 1)}
