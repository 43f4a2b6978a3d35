"""HTTP routes of gate policies and alert sinks, as the store keeps them (engine/store_config.py): the same
as `govcon policies …` and `govcon alerts sinks …`. Reads as every read; changes need a bearer token whose
operator holds admin or ops-lead. A sink's URL and routing key go in and never come out: answers show them
masked, with a fingerprint.

    GET    /api/policies                 every policy
    GET    /api/policies/{name}          one
    PUT    /api/policies/{name}          create or replace (fields not given take their defaults)
    PATCH  /api/policies/{name}          change the fields given (null clears one); creates when new
    DELETE /api/policies/{name}
    GET    /api/alerts/sinks             every sink, secrets masked
    GET    /api/alerts/sinks/{name}
    PUT    /api/alerts/sinks/{name}      create or change (fields not given are kept, the secret included,
                                         unless kind changes)
    DELETE /api/alerts/sinks/{name}
"""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import Field, JsonValue, StrictBool, StrictFloat, StrictInt

from console import api_models as m
from engine.errors import InvalidInput
from engine.store_config import relabel

#: the config file's keys as this API spells them (camelCase, as Policy.to_json)
POLICY_FIELDS = {"commandTypes": "command_types", "enabled": "enabled", "maxPerDay": "max_per_day",
                 "maxPerWeek": "max_per_week", "minInterval": "min_interval", "maxConcurrent": "max_concurrent",
                 "perService": "per_service", "confidenceThreshold": "confidence_threshold",
                 "maintenanceWindowRequired": "maintenance_window_required",
                 "maintenanceWindow": "maintenance_window", "notificationLevel": "notification_level",
                 "requiresApproval": "requires_approval", "rollbackMandatory": "rollback_mandatory",
                 "approverRoles": "approver_roles", "grantTtl": "grant_ttl", "requestTtl": "request_ttl",
                 "stableFor": "stable_for", "calibrated": "calibrated"}
SINK_FIELDS = {"kind": "type", "url": "url", "routingKey": "routing_key", "severities": "severities",
               "timeout": "timeout", "reports": "reports", "from": "from", "to": "to", "username": "username",
               "passwordEnv": "password_env", "caFile": "ca_file"}
_Duration = m.SafeStr


class PolicyBody(m._Body):
    """A policy's settings (the config file's [policies.NAME] keys in camelCase)."""

    commandTypes: list[m.SafeId] | None = Field(None, min_length=1, max_length=100, examples=[["restart_service"]])
    enabled: StrictBool | None = None
    maxPerDay: StrictInt | None = Field(None, ge=0)
    maxPerWeek: StrictInt | None = Field(None, ge=0)
    minInterval: _Duration | None = Field(None, max_length=20, examples=["5m"])
    maxConcurrent: StrictInt | None = Field(None, ge=1)
    perService: StrictBool | None = None
    confidenceThreshold: StrictFloat | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    maintenanceWindowRequired: StrictBool | None = None
    maintenanceWindow: m.SafeStr | None = Field(None, max_length=40, examples=["02:00-05:00"])
    notificationLevel: Literal["info", "alert", "approval_required"] | None = None
    requiresApproval: StrictBool | None = None
    rollbackMandatory: StrictBool | None = None
    approverRoles: list[m.SafeId] | None = Field(None, min_length=1, max_length=10)
    grantTtl: _Duration | None = Field(None, max_length=20, examples=["15m"])
    requestTtl: _Duration | None = Field(None, max_length=20, examples=["30m"])
    stableFor: _Duration | None = Field(None, max_length=20, examples=["30m"])
    calibrated: StrictBool | None = None
    reason: m.SafeStr = Field("", max_length=m.TEXT_MAX, description="why; goes into the audit log")


class SinkBody(m._Body):
    """A sink's settings; ``url`` and ``routingKey`` are secrets: stored, never returned."""

    kind: Literal["webhook", "slack", "pagerduty", "smtp"] | None = Field(None, description="required when new")
    url: m.SafeStr | None = Field(None, max_length=2000, description="secret: never returned")
    routingKey: m.SafeStr | None = Field(None, max_length=200, description="pagerduty; secret: never returned")
    severities: list[Literal["critical", "high", "medium", "low"]] | None = Field(None, min_length=1)
    timeout: StrictFloat | StrictInt | None = Field(None, gt=0, le=60)
    reports: StrictBool | None = None
    from_: m.SafeStr | None = Field(None, alias="from", max_length=320)
    to: list[m.SafeStr] | None = Field(None, min_length=1, max_length=100)
    username: m.SafeStr | None = Field(None, max_length=200)
    passwordEnv: m.SafeStr | None = Field(None, max_length=100,
                                          description="the environment variable holding the SMTP password")
    caFile: m.SafeStr | None = Field(None, max_length=1000)
    reason: m.SafeStr = Field("", max_length=m.TEXT_MAX, description="why; goes into the audit log")


class PolicySpec(m._Out):
    """A policy as the config file spells it ([policies.NAME])."""

    command_types: list[str] | None = None
    enabled: bool | None = None
    max_per_day: int | None = None
    max_per_week: int | None = None
    min_interval: str | None = None
    max_concurrent: int | None = None
    per_service: bool | None = None
    confidence_threshold: float | None = None
    maintenance_window_required: bool | None = None
    maintenance_window: str | None = None
    notification_level: str | None = None
    requires_approval: bool | None = None
    rollback_mandatory: bool | None = None
    approver_roles: list[str] | None = None
    grant_ttl: str | None = None
    request_ttl: str | None = None
    stable_for: str | None = None
    calibrated: bool | None = None


class _Stamped(m._Out):
    createdAt: str
    createdBy: str
    updatedAt: str
    updatedBy: str


class PolicyOut(_Stamped):
    name: str
    commandTypes: list[str]
    enabled: bool
    maxPerDay: int | None
    maxPerWeek: int | None
    minInterval: str | None
    maxConcurrent: int | None
    perService: bool
    confidenceThreshold: float | None
    maintenanceWindowRequired: bool
    maintenanceWindow: str | None
    notificationLevel: str
    requiresApproval: bool
    rollbackMandatory: bool
    approverRoles: list[str]
    grantTtl: str | None
    requestTtl: str | None
    stableFor: str | None
    calibrated: bool
    spec: PolicySpec = Field(description="the settings as the config file spells them")


class InvalidPolicy(_Stamped):
    """A stored policy that no longer loads (edited behind govcon's back): the gate fails closed on it."""

    name: str
    commandTypes: list[str]
    notificationLevel: str
    invalid: str = Field(description="why it does not load")
    spec: JsonValue = Field(description="what is stored")


class PolicyChange(m._Out):
    changed: bool
    created: bool
    policy: PolicyOut


class SinkView(m._Out):
    name: str
    kind: str
    url: str | None = Field(None, description="masked: scheme, host and port only")
    routingKey: str | None = Field(None, description="\"(set, masked)\" or null")
    severities: list[str] = []
    reports: bool = False
    timeout: float = 5.0
    from_: str | None = Field(None, alias="from")
    to: list[str] = []
    username: str | None = None
    passwordEnv: str | None = None
    caFile: str | None = None
    secretFingerprint: str = Field(description="changes when the URL or routing key does; reveals neither")
    invalid: str | None = Field(None, description="a stored sink that no longer loads: shown, never used")


class SinkOut(SinkView, _Stamped):
    pass


class SinkChange(m._Out):
    changed: bool
    created: bool
    sink: SinkOut


class PolicyDeleted(m._Out):
    deleted: str
    before: PolicySpec


class SinkDeleted(m._Out):
    deleted: str
    before: SinkView


def policy_changes(body: PolicyBody, *, fields_set_only: bool) -> dict[str, Any]:
    given = body.model_fields_set if fields_set_only else set(POLICY_FIELDS)
    return {POLICY_FIELDS[k]: getattr(body, k) for k in POLICY_FIELDS if k in given
            and (fields_set_only or getattr(body, k) is not None)}


def sink_changes(body: SinkBody) -> dict[str, Any]:
    changes = {}
    for field, key in SINK_FIELDS.items():
        attr = "from_" if field == "from" else field
        if attr in body.model_fields_set:
            changes[key] = getattr(body, attr)
    return changes


def _relabel_sink(message: str) -> str:
    for field, key in SINK_FIELDS.items():
        if field != key:
            message = re.sub(rf"(?<![\w-]){key}(?![\w-])", field, message)
    return message


def build_router(gov, auth, json_response) -> APIRouter:
    router = APIRouter()
    read = [Depends(auth.reader)]
    change, reads = m.CHANGE_ERRORS, m.READ_ERRORS
    labels = {v: k for k, v in POLICY_FIELDS.items()}

    def set_policy(actor: str, name: str, body: PolicyBody, *, replace: bool):
        try:
            return gov.policy_book.set(actor, name, policy_changes(body, fields_set_only=not replace),
                                       replace=replace, reason=body.reason)
        except InvalidInput as exc:
            raise InvalidInput(relabel(str(exc), name, labels)) from None

    @router.get("/api/policies", tags=["policies"], dependencies=read, responses=reads,
                response_model=list[PolicyOut | InvalidPolicy], summary="Every gate policy in the store")
    def policies():
        return json_response(gov.policy_book.list())

    @router.get("/api/policies/{name}", tags=["policies"], dependencies=read, responses=m.ONE_READ_ERRORS,
                response_model=PolicyOut | InvalidPolicy,
                summary="One gate policy")
    def policy(name: m.SafeId):
        return json_response(gov.policy_book.show(name))

    @router.put("/api/policies/{name}", tags=["policies"], responses=change, response_model=PolicyChange,
                summary="Create or replace a policy (fields not given take their defaults; audited)")
    def put_policy(name: m.SafeId, body: PolicyBody, actor: str = Depends(auth.changer)):
        return json_response(set_policy(actor, name, body, replace=True))

    @router.patch("/api/policies/{name}", tags=["policies"], responses=change, response_model=PolicyChange,
                  summary="Change the fields given (null clears one); a new policy needs commandTypes (audited)")
    def patch_policy(name: m.SafeId, body: PolicyBody, actor: str = Depends(auth.changer)):
        return json_response(set_policy(actor, name, body, replace=False))

    @router.delete("/api/policies/{name}", tags=["policies"], responses=change, response_model=PolicyDeleted,
                   summary="Delete a policy (audited)")
    def delete_policy(name: m.SafeId, actor: str = Depends(auth.changer)):
        return json_response(gov.policy_book.delete(actor, name))

    @router.get("/api/alerts/sinks", tags=["alerts"], dependencies=read, responses=reads,
                response_model=list[SinkOut], summary="Every alert sink in the store; URLs and keys masked")
    def sinks():
        return json_response(gov.sink_book.list())

    @router.get("/api/alerts/sinks/{name}", tags=["alerts"], dependencies=read, responses=m.ONE_READ_ERRORS,
                response_model=SinkOut, summary="One alert sink; URL and key masked")
    def sink(name: m.SafeId):
        return json_response(gov.sink_book.show(name))

    @router.put("/api/alerts/sinks/{name}", tags=["alerts"], responses=change, response_model=SinkChange,
                summary="Create or change a sink: fields not given are kept, the secret included, unless kind "
                        "changes (audited; the secret never returned)")
    def put_sink(name: m.SafeId, body: SinkBody, actor: str = Depends(auth.changer)):
        try:
            return json_response(gov.sink_book.set(actor, name, sink_changes(body), reason=body.reason))
        except InvalidInput as exc:
            raise InvalidInput(_relabel_sink(str(exc))) from None

    @router.delete("/api/alerts/sinks/{name}", tags=["alerts"], responses=change, response_model=SinkDeleted,
                   summary="Delete a sink (audited)")
    def delete_sink(name: m.SafeId, actor: str = Depends(auth.changer)):
        return json_response(gov.sink_book.delete(actor, name))

    return router
