"""Request bodies of the HTTP API and the event schema that the OpenAPI document shows for POST /api/events.

Strict: JSON types exactly as declared, nothing coerced (``true`` is not a number, ``"1"`` not a
boolean), unknown fields refused. Text (``SafeStr``) and path ids (``SafeId``) refuse NUL characters and
lone surrogates with a 422 naming the field: PostgreSQL cannot store either, and a kill-switch reason
must never turn an engage into a 500.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from engine.domain import COMMAND_STATUSES, SAFETY_TYPES, SEVERITIES


def storable_text(value: str) -> str:
    """``value`` unchanged, or ValueError when it holds what no store can keep (NUL, lone surrogates)."""
    nul = value.find("\x00")
    if nul >= 0:
        raise ValueError(f"must not contain a NUL character (\\u0000; at position {nul})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"must not contain a lone surrogate (\\u{ord(value[exc.start]):04x} at position "
                         f"{exc.start}): send valid UTF-8 text") from None
    return value


#: a string field of a request body
SafeStr = Annotated[StrictStr, AfterValidator(storable_text)]
#: an id or name in the URL path (a proposal, event, rule or action)
SafeId = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(storable_text)]
TEXT_MAX = 2000  # reasons and notes


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ApproveBody(_Body):
    approvedBy: SafeStr = Field(max_length=200,
                                description="the role you approve as; your token's operator must hold it",
                                  examples=["tech-lead"])


class RejectBody(_Body):
    reason: SafeStr = Field(max_length=TEXT_MAX, description="why; goes into the audit log")


class ExtendBody(_Body):
    days: StrictInt = Field(ge=1, le=365, description="the whole validation period in days, more than now")
    reason: SafeStr = Field(max_length=TEXT_MAX, description="why; goes into the audit log")


class AlertsBody(_Body):
    """Which dead-lettered alerts: their ids, or every one (``dead``: true) — one of the two."""

    ids: list[Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]] = Field(default_factory=list, max_length=10_000,
                                                                      examples=[[12, 13]])
    dead: StrictBool = Field(False, description="every dead-lettered alert")
    reason: SafeStr | None = Field(None, max_length=TEXT_MAX, description="dismiss only: why they will never be sent")


class ResolveBody(_Body):
    note: SafeStr | None = Field(None, max_length=TEXT_MAX,
                                 description="what was found and done (required: a missing or blank note is "
                                             "a 422 `note required`)")
    falsePositive: StrictBool = Field(False, description="the trip was not a real problem")


class ReasonBody(_Body):
    reason: SafeStr = Field(max_length=TEXT_MAX, description="why; goes into the audit log and the alert")


class KillSwitchBody(_Body):
    action: Literal["engage", "release", "drill"]
    reason: SafeStr | None = Field(None, max_length=TEXT_MAX, description="required to engage or release")


class GateBody(_Body):
    """An agent's ask. Types are strict: ``"confidence": true`` or ``"1"`` is refused, never coerced."""

    commandType: SafeStr = Field(max_length=200, examples=["restart_service"])
    confidence: StrictFloat | None = Field(None, ge=0, le=1, allow_inf_nan=False,
                                           description="the agent's confidence, 0..1")
    actionClass: SafeStr | None = Field(None, max_length=200,
                                          description="a policy name: it can add that policy's limits, never loosen")
    service: SafeStr | None = Field(None, max_length=200, examples=["api"],
                                      description="the service the action touches")
    agent: SafeStr | None = Field(None, max_length=200, examples=["rollback-bot"],
                                    description="the agent asking (default: the token's operator)")
    request: StrictBool = Field(False, description="queue a needs_approval answer as an action request "
                                                   "(needs a token)")


class ActionApproveBody(_Body):
    note: SafeStr | None = Field(None, max_length=2000, description="what the approver checked")


class ActionRejectBody(_Body):
    reason: SafeStr = Field(max_length=2000, description="why; the agent and the audit log see it")


class ModeBody(_Body):
    mode: Literal["normal", "minimal", "read_only"]
    reason: SafeStr = Field(max_length=2000, description="why; goes into the audit log and the alert")


class RulePatch(_Body):
    """Only the fields given change; the whole rule is validated before it is stored."""

    condition: SafeStr | None = Field(None, max_length=TEXT_MAX, examples=["errorRate > 0.08"])
    window: SafeStr | None = Field(None, max_length=20, examples=["10m"])
    action: Literal["revert_to_l3", "pause_command_type", "alert_only"] | None = None
    alertSeverity: Literal["critical", "high", "medium", "low"] | None = None
    minSamples: StrictInt | None = Field(None, ge=1, le=1_000_000)
    enabled: StrictBool | None = None
    shadow: StrictBool | None = Field(None, description="true: this rule only records what it would have done")
    recovery: Literal["half_open", "manual"] | None = Field(
        None, description="pause_command_type: probe the type after resolution (half_open) or unpause it (manual)")
    cooldown: SafeStr | None = Field(None, max_length=20, examples=["1h"],
                                     description="pause_command_type: half-open by itself this long after a trip")
    probes: StrictInt | None = Field(None, description="succeeded probes that close a half-open type (>= 1)")


_AT = {"type": "string", "format": "date-time", "example": "2026-11-20T10:00:00Z"}
_ID = {"type": "string", "minLength": 1, "maxLength": 200}
EVENT_SCHEMA: dict[str, Any] = {
    "title": "Event",
    "oneOf": [
        {"type": "object", "title": "CommandEvent", "required": ["kind", "id", "type", "status", "at"],
         "properties": {"kind": {"const": "command"}, "id": _ID, "type": _ID,
                        "status": {"enum": list(COMMAND_STATUSES)}, "autonomous": {"type": "boolean"},
                        "service": _ID, "at": _AT}},
        {"type": "object", "title": "IncidentEvent", "required": ["kind", "id", "severity", "at"],
         "properties": {"kind": {"const": "incident"}, "id": _ID, "severity": {"enum": list(SEVERITIES)},
                        "command_id": _ID, "service": _ID, "at": _AT}},
        {"type": "object", "title": "SafetyEvent", "required": ["kind", "type", "at"],
         "properties": {"kind": {"const": "safety"}, "type": {"enum": list(SAFETY_TYPES)}, "id": _ID, "at": _AT}},
        {"type": "object", "title": "EvalCoverageEvent", "required": ["kind", "covered", "total", "at"],
         "properties": {"kind": {"const": "eval_coverage"}, "covered": {"type": "integer", "minimum": 0},
                        "total": {"type": "integer", "minimum": 1}, "id": _ID, "at": _AT}},
    ],
}

INGEST_REPORT_EXAMPLE = {"accepted": 2, "duplicate": 0, "rejected": 1,
                         "errors": [{"line": 2, "field": "status",
                                     "message": "unknown status 'exploded'; expected one of proposed, approved, "
                                                "rejected, succeeded, failed, rolled_back"}]}

EVENTS_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "One event, a JSON array of events, or JSON Lines (application/x-ndjson; also detected "
                   "when a multi-line body is not one JSON document).",
    "content": {
        "application/json": {"schema": {"oneOf": [EVENT_SCHEMA, {"type": "array", "items": EVENT_SCHEMA}]}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one event per line"}},
    },
}


class FieldProblem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: a code, and a message naming what is wrong (and, for 422, each field)."""

    error: str = Field(examples=["forbidden"])
    detail: str = Field(examples=["engaging the kill switch needs one of the roles on-call, incident-commander, "
                                  "ops-lead; carol holds no role. An admin can grant it: "
                                  "govcon roles grant carol on-call"])
    errors: list[FieldProblem] | None = None


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: answers any endpoint may give
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    422: _error("a field or parameter is invalid (each named in errors)"),
    503: _error("the store cannot be reached, or has no governance state yet"),
}
#: answers of the endpoints that change something (they need a token)
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("no token, or an unknown or revoked one"),
    403: _error("the token's operator lacks the role (named in detail)"),
    404: _error("no such proposal, rule or event"),
    409: _error("the change conflicts with the current state (e.g. resolved already, not pending)"),
    413: _error("the body is over the size limit"),
}
#: answers of the reads (a token is needed only when the server is not bound to loopback)
READ_ERRORS: dict[int | str, dict[str, Any]] = {401: _error("off loopback, reads need a token too")}
