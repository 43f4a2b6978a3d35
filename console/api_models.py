"""Request bodies of the HTTP API and the event schema that the OpenAPI document shows for POST /api/events.

Strict: JSON types exactly as declared, nothing coerced (``true`` is not a number, ``"1"`` not a
boolean), unknown fields refused. Text (``SafeStr``) and path ids (``SafeId``) refuse NUL characters and
lone surrogates with a 422 naming the field: PostgreSQL cannot store either, and a kill-switch reason
must never turn an engage into a 500.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

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

INGEST_REPORT_EXAMPLE = {"accepted": 2, "duplicate": 0, "rejected": 1, "conflict": 0,
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
    400: _error("the body is not JSON at all (or, ingest: empty, undecodable, a JSON scalar)"),
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
#: answers of the reads of one thing by its id or name
ONE_READ_ERRORS: dict[int | str, dict[str, Any]] = {**READ_ERRORS, 404: _error("no such thing: the detail names it "
                                                                            "(a rule's with a did-you-mean)")}


# --- answers: what each endpoint returns on success ----------------------------------------------------
#
# The engine's documents, declared for the OpenAPI document. Endpoints answer with the engine's JSON as
# it is (``json_response``: no per-request validation on the hot paths); tests/integration/test_api_schema.py
# and test_api.py's schemathesis run check every answer against these models. ``extra="forbid"``: a field
# the engine adds without declaring it here fails those checks, so the document stays complete.

#: a number, text or a list of severities: what a breaker observed (``errorRate``, ``samples``, ``window``…)
Observed = dict[str, float | str | list[str] | None]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Leader(_Out):
    """The scheduler's leader lease (one leader among every console and server on the store)."""

    holder: str
    expiresAt: str
    alive: bool


class KillMarker(_Out):
    """The kill-switch marker file (docs/safety.md): there, it holds the switch even without the store."""

    path: str
    engaged: bool
    by: str | None = None
    at: str | None = None
    reason: str | None = None


class KillSwitchState(_Out):
    engaged: bool
    by: str | None
    at: str | None
    reason: str | None
    marker: KillMarker | None = Field(None, description="the marker file when it is there")
    storeReadable: bool | None = Field(None, description="false: the store could not be read, the marker "
                                                         "file alone answered")


class HealthStore(_Out):
    backend: str
    reachable: bool
    writable: bool


class SchedulerInfo(_Out):
    holder: str
    leader: bool


class Health(_Out):
    """200 healthy or degraded (``detail`` says why), 503 unhealthy."""

    status: Literal["healthy", "degraded", "unhealthy"]
    service: str
    version: str
    store: HealthStore
    killSwitchMarker: KillMarker
    detail: str | None = None
    killSwitchEngaged: bool | None = None
    phase: str | None = None
    leader: Leader | None = None
    scheduler: SchedulerInfo | None = None


class ValidationPeriod(_Out):
    until: str
    daysLeft: int
    proposalId: str | None


class DrainGrant(_Out):
    grantId: str
    agent: str
    commandType: str
    expiresAt: str


class DrainAgent(_Out):
    name: str
    lastBeatAt: str
    leaseExpiresAt: str | None = None
    lapsedAt: str | None = None


class Drain(_Out):
    """After the kill switch: what is still in flight, which agents have not heard."""

    since: str
    grantsInFlight: int
    grants: list[DrainGrant]
    agentsNotBeaten: list[DrainAgent]
    agentsLapsed: list[DrainAgent]
    agentsAcknowledged: int
    stopped: bool


class GovernanceState(_Out):
    """As `govcon status --json`."""

    currentPhase: str
    phaseStartDate: str
    commandWhitelist: list[str]
    pausedCommandTypes: list[str]
    killSwitch: KillSwitchState
    breakerMode: str
    mode: Literal["normal", "minimal", "read_only"]
    unresolvedEvents: int
    grantsInFlight: int
    pendingRequests: int
    halfOpen: dict[str, int] = Field(description="half-open command type -> succeeded probes still needed")
    readinessScore: float | None
    validationPeriod: ValidationPeriod | None
    leader: Leader | None
    drain: Drain | None = None


# --- metrics and readiness

class Period(_Out):
    start: str
    end: str


class CommandCounts(_Out):
    total: int
    proposed: int
    approved: int
    rejected: int
    succeeded: int
    failed: int
    rolledBack: int


class Rates(_Out):
    """null while unknown (no commands to divide by)."""

    successRate: float | None
    approvalRate: float | None
    rollbackRate: float | None
    errorRate: float | None


class IncidentCounts(_Out):
    total: int
    critical: int
    fromAutonomousActions: int


class SafetyCounts(_Out):
    constraintViolations: int
    emergencyAborts: int
    safetyGateTriggers: int


class AutonomousCounts(_Out):
    commands: CommandCounts
    rates: Rates


class AutonomyMetrics(_Out):
    """As `govcon metrics --json`."""

    period: Period
    commands: CommandCounts
    rates: Rates
    incidents: IncidentCounts
    safety: SafetyCounts
    autonomous: AutonomousCounts


class ReadinessCategories(_Out):
    technical: float
    process: float
    organizational: float


class ReadinessScore(_Out):
    score: float
    ready: bool
    blockers: list[str]
    categories: ReadinessCategories
    recommendation: str
    timestamp: str


class ReadinessOverall(_Out):
    score: float
    ready: bool
    blockers: list[str]
    points: int
    possible: int


class ChecklistResult(_Out):
    name: str
    slug: str
    weight: int
    required: bool
    status: bool
    details: str
    decidedBy: str


class ReadinessCategory(_Out):
    score: float
    items: list[ChecklistResult]


class Recommendation(_Out):
    type: str
    priority: str
    rationale: str
    actions: list[str]


class NextAction(_Out):
    item: str
    required: bool
    points: int
    action: str
    command: str | None


class ReadinessReport(_Out):
    """As `govcon readiness --json`."""

    timestamp: str
    currentPhase: str
    daysSincePhaseStart: int
    overall: ReadinessOverall
    technical: ReadinessCategory
    process: ReadinessCategory
    organizational: ReadinessCategory
    recommendations: list[Recommendation]
    nextActions: list[NextAction]


# --- circuit breakers

class RuleStatistics(_Out):
    trips: int
    resolved: int
    falsePositives: int
    falsePositiveRate: float | None
    shadowTrips: int
    lastTrip: str | None


class Rule(_Out):
    name: str
    enabled: bool
    condition: str
    window: str
    action: Literal["revert_to_l3", "pause_command_type", "alert_only"]
    alertSeverity: Literal["critical", "high", "medium", "low"]
    minSamples: int
    shadow: bool
    recovery: Literal["half_open", "manual"]
    cooldown: str | None
    probes: int
    statistics: RuleStatistics


class BreakerEvent(_Out):
    """As `govcon events list --json`."""

    id: str
    ruleName: str
    timestamp: str
    severity: str
    action: str
    commandType: str | None
    observed: Observed = Field(description="the values the rule judged, its samples, window and effect")
    shadow: bool
    resolved: bool
    resolvedBy: str | None
    resolvedAt: str | None
    note: str | None
    falsePositive: bool


# --- proposals and the governance report

class Expansion(_Out):
    currentPhase: str
    targetPhase: str
    commandsToWhitelist: list[str]
    validationPeriod: int = Field(description="days")


class RationaleReadiness(_Out):
    score: float
    ready: bool
    blockers: list[str]


class CommandChoice(_Out):
    commandType: str
    chosen: bool
    reason: str
    humanApproved: int
    successRate: float | None
    rollbackRate: float | None


class Rationale(_Out):
    metrics: AutonomyMetrics
    readiness: RationaleReadiness
    keyAchievements: list[str]
    commandChoices: list[CommandChoice]


class RiskAssessment(_Out):
    level: str
    mitigations: list[str]
    rollbackPlan: str


class Approval(_Out):
    role: str
    approver: str
    at: str


class Proposal(_Out):
    proposalId: str
    timestamp: str
    proposedBy: str
    triggeredBy: str
    expansion: Expansion
    rationale: Rationale
    riskAssessment: RiskAssessment
    requiredApprovals: list[str]
    status: Literal["pending", "approved", "rejected", "expired"]
    approvals: list[Approval]
    stillNeeded: list[str]
    expiresAt: str
    decidedAt: str | None
    decidedBy: str | None
    reason: str | None
    appliedAt: str | None


class Reversion(_Out):
    at: str
    proposalId: str
    breakerEventId: str | None


class GovernanceReport(_Out):
    """As `govcon cycle --json`."""

    id: str
    timestamp: str
    triggeredBy: str
    metrics: AutonomyMetrics
    previousMetrics: AutonomyMetrics | None
    readiness: ReadinessReport
    recommendation: str
    circuitBreakerEvents: list[BreakerEvent]
    validationReversions: list[Reversion]
    proposal: Proposal | None
    proposalNote: str | None


class StoredReport(GovernanceReport):
    markdown: str = Field(description="the report as Markdown (what `govcon report` prints)")


# --- alerts and overrides

class Alert(_Out):
    """An alert of the outbox, as `govcon alerts list --json`."""

    id: int
    createdAt: str
    sink: str
    severity: str
    kind: str
    title: str | None
    dedupKey: str
    status: Literal["pending", "sent", "dead", "dismissed"]
    attempts: int
    nextAttemptAt: str | None
    sentAt: str | None
    lastError: str | None
    superseded: bool
    idempotencyKey: str


class AlertsChanged(_Out):
    changed: list[Alert]
    superseded: list[Alert] = Field(description="dead triggers left dead: their incident is resolved already")


class OverrideAnswer(_Out):
    changed: bool
    message: str


class KillSwitchAnswer(_Out):
    changed: bool
    message: str
    via: Literal["store", "marker"] | None = Field(None, description="marker: the store could not be written "
                                                                     "and the marker file holds the switch")
    passed: bool | None = Field(None, description="a drill: whether it passed")
    killSwitch: KillSwitchState


class ModeState(_Out):
    mode: Literal["normal", "minimal", "read_only"]


class ModeAnswer(_Out):
    mode: Literal["normal", "minimal", "read_only"]
    changed: bool
    message: str


# --- ingest

class IngestProblem(_Out):
    line: int = Field(description="the array index (from 1) or the JSON Lines line number")
    field: str | None
    message: str
    conflict: bool | None = Field(None, description="a resend that differs from the stored event")


class _IngestCounts(_Out):
    accepted: int
    duplicate: int
    rejected: int
    errors: list[IngestProblem]
    detail: str | None = Field(None, description="with 422 or 409: how many, the first, and what was stored")


class IngestReport(_IngestCounts):
    conflict: int = Field(description="resends of a stored event that differ from it (nothing changed)")


class AlertmanagerReport(_IngestCounts):
    conflict: int | None = Field(None, description="as ingest's; absent when no alert was firing (nothing stored)")
    firing: int
    resolvedIgnored: int
    defaultSeverity: list[str] = Field(description="fingerprints of alerts without the severity label")
    unknownSeverity: dict[str, str] = Field(description="fingerprint -> the severity word not understood")


# --- the gate, actions, agents

class Budget(_Out):
    used: int
    limit: int
    remaining: int


class Budgets(_Out):
    day: Budget | None = None
    week: Budget | None = None
    concurrent: Budget | None = None


class HalfOpenProbe(_Out):
    probesLeft: int
    probeInFlight: str | None = None


class GateAnswer(_Out):
    """allow (with a grant), needs_approval (a request when asked to queue one) or deny, and why."""

    decision: Literal["allow", "needs_approval", "deny"]
    reason: str
    commandType: str
    phase: str | None
    budget: Budgets | None = Field(description="the deciding policy's limits, used and left")
    policy: str | None = None
    notificationLevel: str | None = None
    approverRoles: list[str] | None = None
    rollbackMandatory: bool | None = None
    calibration: str | None = None
    grantId: str | None = None
    expiresAt: str | None = None
    agent: str | None = None
    requestId: str | None = None
    requestExpiresAt: str | None = None
    requestError: str | None = None
    probe: bool | None = None
    halfOpen: HalfOpenProbe | None = None


class Decision(_Out):
    at: str
    commandType: str
    service: str | None
    agent: str | None
    confidence: float | None
    actionClass: str | None
    decision: Literal["allow", "needs_approval", "deny"]
    reason: str
    policy: str | None
    grantId: str | None
    requestId: str | None


class Outcome(_Out):
    id: str
    commandType: str
    status: str
    at: str


class DecisionLog(_Out):
    decisions: list[Decision]
    outcomesWithoutGrant: list[Outcome]


class ActionRequest(_Out):
    requestId: str
    commandType: str
    service: str | None
    agent: str
    confidence: float | None
    actionClass: str | None
    policy: str | None
    reason: str
    notificationLevel: str
    approverRoles: list[str]
    requestedBy: str | None
    requestedAt: str
    expiresAt: str
    status: str
    decidedBy: str | None
    decidedAt: str | None
    note: str | None
    grantId: str | None


class Grant(_Out):
    grantId: str
    commandType: str
    service: str | None
    agent: str
    confidence: float | None
    actionClass: str | None
    policy: str | None
    grantedAt: str
    expiresAt: str
    status: str
    outcomeAt: str | None
    requestId: str | None
    approvedBy: str | None
    requestedBy: str | None
    report: dict[str, JsonValue] | None = Field(None, description="one action: what `govcon run` reported")


class Actions(_Out):
    requests: list[ActionRequest]
    grants: list[Grant]


class Action(_Out):
    request: ActionRequest | None
    grant: Grant | None
    status: str


class Agent(_Out):
    name: str
    live: bool
    leaseExpiresAt: str
    lapsedAt: str | None
    lastBeatAt: str
    firstSeenAt: str
    ttl: int
    beats: int
    lastOperator: str | None
    lastTokenId: str | None
    inFlight: int


class Agents(_Out):
    at: str
    requireLease: bool
    agents: list[Agent]


class AgentGrant(_Out):
    grantId: str
    commandType: str
    expiresAt: str


class AgentDetail(Agent):
    grantsInFlight: list[AgentGrant]


class Heartbeat(_Out):
    agent: str
    autonomy: Literal["granted", "suspended"]
    reason: str
    killSwitch: KillSwitchState
    mode: Literal["normal", "minimal", "read_only"]
    leaseExpiresAt: str
    ttl: int
    beatAt: str
    beats: int
    registered: bool


class CalibrationBin(_Out):
    low: float
    high: float
    count: int
    statedMean: float | None
    observed: float | None


class Calibration(_Out):
    agent: str
    commandType: str | None
    outcomes: int
    succeeded: int
    brier: float | None
    ece: float | None
    minOutcomes: int
    bins: list[CalibrationBin]


class Calibrations(_Out):
    agent: str
    calibrations: list[Calibration]


#: a success answer that is not JSON, for ``responses=`` (the OpenAPI document still says what it is)
def text_answer(media_type: str, description: str, **schema: Any) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {media_type: {"schema": {"type": "string", **schema}}}}}
