"""The domain's fixed vocabulary (DESIGN.md contract): phases, statuses, severities, roles.

The enums are ``StrEnum``s: a member *is* its string (``Phase.L3_PLUS == "L3+"``, ``f"{Phase.L3_PLUS}"`` is
``L3+``), so it goes into the store, JSON and messages exactly as the plain string did, and a string read from
the store compares equal to it. The tuples (``PHASES``, ``BREAKER_ACTIONS``, …) are the same values as plain
strings, in contract order.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    L3 = "L3"
    L3_PLUS = "L3+"
    L4 = "L4"
    L4_PLUS = "L4+"
    L5 = "L5"


class CommandStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class BreakerAction(StrEnum):
    REVERT_TO_L3 = "revert_to_l3"
    PAUSE_COMMAND_TYPE = "pause_command_type"
    ALERT_ONLY = "alert_only"


class BreakerMode(StrEnum):
    ENFORCE = "enforce"
    SHADOW = "shadow"


class Decision(StrEnum):
    """The gate's answer (DESIGN.md "Gate")."""

    ALLOW = "allow"
    NEEDS_APPROVAL = "needs_approval"
    DENY = "deny"


class ProposalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # and applied
    REJECTED = "rejected"
    EXPIRED = "expired"


class RequestStatus(StrEnum):
    """An action request's (DESIGN.md "Action requests")."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class GrantStatus(StrEnum):
    """A grant's: in flight (``granted``), its reported outcome, or how it ended without one."""

    GRANTED = "granted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    EXPIRED = "expired"
    RELEASED = "released"


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


PHASES: tuple[str, ...] = _values(Phase)

COMMAND_STATUSES: tuple[str, ...] = _values(CommandStatus)
SEVERITIES: tuple[str, ...] = _values(Severity)
SAFETY_TYPES: tuple[str, ...] = ("constraint_violation", "emergency_abort", "safety_gate_trigger")
#: a safety event's stored type -> its name in metrics documents and rule conditions (``safety.<name>``):
#: the one mapping metrics, breakers, backtests and drill-downs share
SAFETY_NAMES: dict[str, str] = {"constraint_violation": "constraintViolations", "emergency_abort": "emergencyAborts",
                                "safety_gate_trigger": "safetyGateTriggers"}
#: ``safety.<name>`` (a rule's metric) -> the stored type it counts
SAFETY_METRIC_TYPES: dict[str, str] = {f"safety.{name}": kind for kind, name in SAFETY_NAMES.items()}


def safety_totals(counts_by_type: dict[str, int], prefix: str = "") -> dict[str, int]:
    """Counts of safety events by stored type as named in documents (``prefix`` "safety." for rule
    metrics), every name present (0 when none)."""
    return {prefix + name: counts_by_type.get(kind, 0) for kind, name in SAFETY_NAMES.items()}
EVENT_KINDS: tuple[str, ...] = ("command", "incident", "safety", "eval_coverage")

BREAKER_ACTIONS: tuple[str, ...] = _values(BreakerAction)
BREAKER_MODES: tuple[str, ...] = _values(BreakerMode)
DECISIONS: tuple[str, ...] = _values(Decision)

#: the people who govern: any of them may run the cycle and ingest
GOVERNANCE_ROLES: tuple[str, ...] = (
    "tech-lead", "ops-lead", "product-lead", "exec-sponsor",
    "on-call", "incident-commander", "admin",
)
#: ``agent``: what an automation's token needs and no more: ingest its events, ask the gate (with a request)
#: and beat its lease. No governance power: it cannot resolve breaker events, approve, revert or touch the
#: kill switch, so an agent cannot clear the evidence against itself.
AGENT_ROLE = "agent"
ROLES: tuple[str, ...] = (*GOVERNANCE_ROLES, AGENT_ROLE)

#: roles whose approvals a transition needs (runbook, "Gather Approvals")
REQUIRED_APPROVALS: dict[tuple[str, str], tuple[str, ...]] = {
    ("L3", "L3+"): ("tech-lead",),
    ("L3+", "L4"): ("tech-lead", "ops-lead"),
    ("L4", "L4+"): ("tech-lead", "ops-lead", "product-lead"),
    ("L4+", "L5"): ("tech-lead", "ops-lead", "product-lead", "exec-sponsor"),
}

#: who may do what (DESIGN.md, "Identity and roles")
ACTION_ROLES: dict[str, tuple[str, ...]] = {
    "kill_switch.engage": ("on-call", "incident-commander", "ops-lead"),
    "revert": ("on-call", "incident-commander", "ops-lead"),
    "kill_switch.release": ("incident-commander", "ops-lead"),
    "events.resolve": ("on-call", "ops-lead"),
    "rules.edit": ("admin", "ops-lead"),
    "attest": ("admin", "tech-lead", "ops-lead"),
    "cycle": GOVERNANCE_ROLES,
    "ingest": ROLES,
    "heartbeat": (AGENT_ROLE,),
    "roles.manage": ("admin",),
    "tokens.manage": ("admin",),
    "alerts.manage": ("on-call", "ops-lead", "admin"),
    "read": ROLES,            # through the service (client mode): the socket admits, a role lets one see
    "gate.ask": ROLES,        # through the service's socket (HTTP asks need a token)
    "db.backup": ("admin",),  # through the service: the copy holds every table, token hashes included
    "sinks.edit": ("admin", "ops-lead"),
}

ACTION_DESCRIPTIONS: dict[str, str] = {
    "kill_switch.engage": "engaging the kill switch",
    "revert": "reverting to L3",
    "kill_switch.release": "releasing the kill switch",
    "events.resolve": "resolving breaker events",
    "rules.edit": "editing rules, breaker mode and policies",
    "attest": "attesting checklist items",
    "cycle": "running the governance cycle",
    "ingest": "ingesting events",
    "heartbeat": "sending agent heartbeats (renewing a lease)",
    "roles.manage": "granting and revoking roles",
    "tokens.manage": "creating and revoking API tokens",
    "alerts.manage": "re-sending or dismissing dead-lettered alerts",
    "read": "reading the governance store through the govcon service",
    "gate.ask": "asking the gate through the govcon service",
    "db.backup": "backing up the store through the govcon service",
    "sinks.edit": "editing alert sinks and their routing",
}


def next_phase(phase: str) -> str | None:
    i = PHASES.index(phase)
    return PHASES[i + 1] if i + 1 < len(PHASES) else None

#: seed 000's default circuit-breaker rules; they ship enabled
DEFAULT_RULES: tuple[dict, ...] = (
    {"name": "High Error Rate", "enabled": True, "condition": "errorRate > 0.05", "window": "5m",
     "action": "revert_to_l3", "alert_severity": "critical", "min_samples": 10},
    {"name": "Repeated Command Failures", "enabled": True, "condition": "commandType.failures >= 3",
     "window": "5m", "action": "pause_command_type", "alert_severity": "high", "min_samples": 10},
    {"name": "Critical Incident Detected", "enabled": True, "condition": 'incident.severity === "critical"',
     "window": "1m", "action": "revert_to_l3", "alert_severity": "critical", "min_samples": 10},
    {"name": "High Rollback Rate", "enabled": True, "condition": "rollbackRate > 0.1", "window": "15m",
     "action": "alert_only", "alert_severity": "medium", "min_samples": 10},
)
