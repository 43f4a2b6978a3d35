"""Errors as an operator reads them: a title and a message, never a traceback."""

from __future__ import annotations

from engine.errors import Conflict, GovconError, InvalidInput, NotFound, PermissionDenied
from storage.db import StoreUnavailable

TITLES = ((PermissionDenied, "Not allowed"), (Conflict, "Refused"), (InvalidInput, "Invalid input"),
          (NotFound, "Not found"), (StoreUnavailable, "Store unreachable"), (GovconError, "Refused"))


def describe_error(exc: BaseException) -> str:
    """The message of our own errors; the class and first line of anything else."""
    text = str(exc)
    if isinstance(exc, (GovconError, StoreUnavailable)) and text:
        return text
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def error_title(exc: BaseException) -> str:
    for cls, title in TITLES:
        if isinstance(exc, cls):
            return title
    return "Failed"
