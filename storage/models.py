"""SQLModel tables for the whole govcon domain.

Conventions:
- every timestamp is UTC, stored naive (``UTCDateTime``) so SQLite and PostgreSQL compare the same way;
- lists and dicts are JSON columns (``JSON`` maps to TEXT on SQLite and json on PostgreSQL);
- idempotency keys are unique constraints, so duplicates are refused by the database itself.

Later issues add columns through Alembic migrations (``storage/migrations/versions``).

These classes are the schema's source of truth, for Alembic (storage/migrations). The runtime imports the
plain Core tables in storage/tables.py instead, generated from here by tools/generate_tables.py: after a
change here, run ``python tools/generate_tables.py`` (tests/unit/test_tables.py checks they agree).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime  # noqa: F401  (also re-exported: the migrations use models.UTCDateTime)


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


def _json(default_factory: Callable[[], Any] | None = None, **kw: Any) -> Any:
    if default_factory is not None:
        kw["default_factory"] = default_factory
    return Field(sa_type=sa.JSON, **kw)


# --- events in -------------------------------------------------------------------------------


def _arrivals_index(table: str) -> sa.Index:
    """The rows judged on arrival, by arrival (``events_repo._window_rows``, ``drilldown_repo._in_window``: one
    seek says whether any arrived in a window). Partial: almost every event is on time or backfill, and a full
    index cost every insert an entry no query reads (migration 0025). Each predicate is spelled as SQLAlchemy
    renders ``judged_on_arrival.is_(True)`` for that dialect: SQLite uses a partial index only for a WHERE term
    the same as its own, and PostgreSQL proves ``IS TRUE`` from ``IS TRUE`` (not from the bare column)."""
    return sa.Index(f"ix_{table}_arrivals", "ingested_at", "at",
                    postgresql_where=sa.text("judged_on_arrival IS TRUE"),
                    sqlite_where=sa.text("judged_on_arrival IS 1"))


class CommandEvent(SQLModel, table=True):
    """One status of one command; ``(command_id, status)`` is the idempotency key."""

    __tablename__ = "command_events"
    __table_args__ = (
        sa.UniqueConstraint("command_id", "status", name="uq_command_events_id_status"),
        sa.Index("ix_command_events_at_status", "at", "status", "command_id"),
        # covers the gate's rate-limit counts (autonomous executions of a type in a day or week)
        sa.Index("ix_command_events_type_at", "command_type", "at", "autonomous", "status", "command_id"),
        # breakers judge late arrivals in a window too: a seek to the late rows arrived since its start
        _arrivals_index("command_events"),
    )

    id: int | None = Field(default=None, primary_key=True)
    command_id: str = Field(max_length=200)
    command_type: str = Field(max_length=200)
    status: str = Field(max_length=20)
    autonomous: bool = False
    at: datetime = _ts()
    ingested_at: datetime = _ts()
    service: str | None = Field(default=None, max_length=200)  # the service the action concerns
    judged_on_arrival: bool = False  # late (within the late horizon) or ahead: breakers judge its arrival too


class CommandRollup(SQLModel, table=True):
    """Hourly aggregates of command_events, kept as events arrive and leave (storage/rollups.py).

    ``hour`` is the hour's number since the epoch (seconds // 3600). Two kinds of row:
    per-status event counts (``status`` a command status, ``prev_hour`` -1), per type and autonomy and
    over all types (``command_type`` ''); and the rows that distinct-command totals are made of
    (``status`` '*'): the events of a command (within a group: all, per autonomy, per type;
    ``autonomous`` -1 and ``command_type`` '' where not grouped) counted at the hour of each event,
    under the hour of the group's previous event of that command (``prev_hour``, -1 for none).
    """

    __tablename__ = "command_rollups"

    command_type: str = Field(primary_key=True, max_length=200)
    hour: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    autonomous: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    status: str = Field(primary_key=True, max_length=20)
    prev_hour: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    n: int = 0


class Incident(SQLModel, table=True):
    __tablename__ = "incidents"
    __table_args__ = (sa.Index("ix_incidents_at", "at"),
                      _arrivals_index("incidents"))

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(max_length=200, unique=True)
    severity: str = Field(max_length=20)
    command_id: str | None = Field(default=None, max_length=200, index=True)
    at: datetime = _ts()
    ingested_at: datetime = _ts()
    service: str | None = Field(default=None, max_length=200)
    judged_on_arrival: bool = False


class SafetyEvent(SQLModel, table=True):
    """constraint_violation, emergency_abort or safety_gate_trigger; key = given id or type@at."""

    __tablename__ = "safety_events"
    __table_args__ = (sa.Index("ix_safety_events_at", "at"),
                      _arrivals_index("safety_events"))

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=300, unique=True)
    type: str = Field(max_length=40)
    at: datetime = _ts()
    ingested_at: datetime = _ts()
    judged_on_arrival: bool = False


class EvalCoverage(SQLModel, table=True):
    __tablename__ = "eval_coverage"
    __table_args__ = (sa.Index("ix_eval_coverage_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=300, unique=True)
    covered: int
    total: int
    at: datetime = _ts()
    ingested_at: datetime = _ts()


# --- governance state --------------------------------------------------------------------------


class GovernanceState(SQLModel, table=True):
    """The single row (id = 1) holding the store's current governance state."""

    __tablename__ = "governance_state"

    id: int = Field(default=1, primary_key=True)
    current_phase: str = Field(max_length=5)
    phase_started_at: datetime = _ts()
    adopted_at: datetime = _ts()  # when the organisation entered L3 (db init --phase-started)
    command_whitelist: list = _json(default_factory=list)
    paused_command_types: list = _json(default_factory=list)
    kill_switch_engaged: bool = False
    kill_switch_by: str | None = None
    kill_switch_at: datetime | None = _ts(default=None, nullable=True)
    kill_switch_reason: str | None = None
    breaker_mode: str = Field(default="enforce", max_length=10)
    validation_until: datetime | None = _ts(default=None, nullable=True)
    validation_proposal_id: str | None = Field(default=None, max_length=64)
    four_eyes_relaxed: bool = False  # only a demo store: one operator may fill every role
    mode: str = Field(default="normal", max_length=10)  # normal | minimal | read_only (seed 003)
    audit_head_seq: int = 0  # the newest audit entry, so that deleting the newest rows is found
    audit_head_hash: str = Field(default="", max_length=64)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)
    updated_at: datetime = _ts()
    #: bumped with every change of gate_policies / alert_sinks: processes reload what they cached on a change
    policies_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    sinks_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class PhaseHistory(SQLModel, table=True):
    __tablename__ = "phase_history"

    id: int | None = Field(default=None, primary_key=True)
    phase: str = Field(max_length=5)
    started_at: datetime = _ts()
    ended_at: datetime | None = _ts(default=None, nullable=True)
    actor: str = Field(max_length=200)
    reason: str = ""
    proposal_id: str | None = Field(default=None, max_length=64)
    breaker_event_id: str | None = Field(default=None, max_length=64)


class KillSwitchDrill(SQLModel, table=True):
    __tablename__ = "kill_switch_drills"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    operator: str = Field(max_length=200)
    passed: bool
    details: str = ""


# --- breakers ----------------------------------------------------------------------------------


class BreakerRule(SQLModel, table=True):
    __tablename__ = "breaker_rules"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    enabled: bool = True
    condition: str = Field(max_length=1000)
    window: str = Field(max_length=20)
    action: str = Field(max_length=30)
    alert_severity: str = Field(max_length=20)
    min_samples: int = 10
    shadow: bool = False  # this rule only records what it would have done (the others may enforce)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    # pause_command_type only: how a paused type comes back (engine/recovery.py)
    recovery: str = Field(default="half_open", max_length=20)  # half_open | manual
    cooldown: str | None = Field(default=None, max_length=20)  # e.g. "1h": half-open without a human
    probes: int = 3  # succeeded probes that close a half-open type


class BreakerEvent(SQLModel, table=True):
    __tablename__ = "breaker_events"
    __table_args__ = (
        sa.Index("ix_breaker_events_open", "resolved", "rule_name", "command_type"),
        sa.Index("ix_breaker_events_timestamp", "timestamp"),
    )

    id: str = Field(primary_key=True, max_length=64)
    rule_name: str = Field(max_length=200)
    timestamp: datetime = _ts()
    severity: str = Field(max_length=20)
    action: str = Field(max_length=30)
    command_type: str | None = Field(default=None, max_length=200)
    observed: dict = _json(default_factory=dict)
    shadow: bool = False
    resolved: bool = False
    resolved_by: str | None = Field(default=None, max_length=200)
    resolved_at: datetime | None = _ts(default=None, nullable=True)
    note: str | None = None
    false_positive: bool = False


class HalfOpenType(SQLModel, table=True):
    """A command type on probation after a pause (seed 002's HALF_OPEN): the gate grants one probe at a
    time; ``probes_left`` succeeded probes close it, a failed one pauses it again."""

    __tablename__ = "half_open"

    command_type: str = Field(primary_key=True, max_length=200)
    since: datetime = _ts()
    probes_left: int
    probe_grant_id: str | None = Field(default=None, max_length=40)  # the probe in flight, if any
    event_id: str = Field(max_length=64)  # the breaker event whose resolution opened it
    rule_name: str = Field(max_length=200)


# --- snapshots and assessments -----------------------------------------------------------------


class MetricsSnapshot(SQLModel, table=True):
    __tablename__ = "metrics_snapshots"

    id: int | None = Field(default=None, primary_key=True)
    taken_at: datetime = _ts(index=True)
    period_start: datetime = _ts()
    period_end: datetime = _ts()
    total: int = 0
    success_rate: float | None = None
    approval_rate: float | None = None
    rollback_rate: float | None = None
    error_rate: float | None = None
    data: dict = _json(default_factory=dict)  # the whole AutonomyMetrics document


class ReadinessAssessment(SQLModel, table=True):
    __tablename__ = "readiness_assessments"

    id: int | None = Field(default=None, primary_key=True)
    taken_at: datetime = _ts(index=True)
    score: float
    ready: bool
    technical_score: float
    process_score: float
    organizational_score: float
    data: dict = _json(default_factory=dict)  # the whole ReadinessReport document


class Attestation(SQLModel, table=True):
    """A named operator's statement, with evidence, about a checklist item; it expires."""

    __tablename__ = "attestations"
    __table_args__ = (sa.Index("ix_attestations_item_at", "item_slug", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    item_slug: str = Field(max_length=100)
    passed: bool
    evidence: str
    operator: str = Field(max_length=200)
    at: datetime = _ts()
    expires_at: datetime = _ts()


# --- proposals, reports ------------------------------------------------------------------------


class Proposal(SQLModel, table=True):
    __tablename__ = "proposals"

    id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = _ts(index=True)
    proposed_by: str = Field(max_length=200)
    current_phase: str = Field(max_length=5)
    target_phase: str = Field(max_length=5)
    commands_to_whitelist: list = _json(default_factory=list)
    validation_period_days: int = 14
    rationale: dict = _json(default_factory=dict)
    risk_assessment: dict = _json(default_factory=dict)
    required_approvals: list = _json(default_factory=list)
    status: str = Field(default="pending", max_length=20, index=True)
    expires_at: datetime | None = _ts(default=None, nullable=True)
    decided_at: datetime | None = _ts(default=None, nullable=True)
    decided_by: str | None = Field(default=None, max_length=200)
    reason: str | None = None
    applied_at: datetime | None = _ts(default=None, nullable=True)
    expiry_warned_at: datetime | None = _ts(default=None, nullable=True)


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"
    __table_args__ = (
        sa.UniqueConstraint("proposal_id", "role", name="uq_approvals_role"),
        sa.UniqueConstraint("proposal_id", "approver", name="uq_approvals_approver"),
    )

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: str = Field(foreign_key="proposals.id", max_length=64)
    role: str = Field(max_length=40)
    approver: str = Field(max_length=200)
    at: datetime = _ts()


class Report(SQLModel, table=True):
    __tablename__ = "reports"

    id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = _ts(index=True)
    kind: str = Field(default="weekly", max_length=20)
    recommendation: str = Field(max_length=20)
    data: dict = _json(default_factory=dict)
    markdown: str = ""


# --- audit, identity ---------------------------------------------------------------------------


class AuditEntry(SQLModel, table=True):
    """Hash-chained: ``hash = sha256(prev_hash + canonical(entry))`` (see storage/audit.py)."""

    __tablename__ = "audit_log"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = _ts(index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=60, index=True)
    target: str = Field(default="", max_length=300)
    reason: str = ""
    details: dict = _json(default_factory=dict)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    # keyed chain (0012): the id of the HMAC key this entry is keyed with ("" = plain sha256, unkeyed), and
    # the governance state after the entry (phase, whitelist, pauses, kill switch, modes), for `audit verify`
    key_id: str = Field(default="", max_length=16, sa_column_kwargs={"server_default": ""})
    state: dict | None = _json(default=None, nullable=True)


class RoleGrant(SQLModel, table=True):
    __tablename__ = "role_grants"
    __table_args__ = (sa.UniqueConstraint("operator", "role", name="uq_role_grants"),)

    id: int | None = Field(default=None, primary_key=True)
    operator: str = Field(max_length=200, index=True)
    role: str = Field(max_length=40)
    granted_by: str = Field(max_length=200)
    granted_at: datetime = _ts()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True, max_length=32)
    operator: str = Field(max_length=200)
    token_hash: str = Field(max_length=128, unique=True)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)
    revoked_at: datetime | None = _ts(default=None, nullable=True)
    last_used_at: datetime | None = _ts(default=None, nullable=True)
    expires_at: datetime | None = _ts(default=None, nullable=True)  # 0007: None = never expires
    agent: str | None = Field(default=None, max_length=200, nullable=True)  # 0007: the agent it beats for


class LeaderLease(SQLModel, table=True):
    __tablename__ = "leader_lease"

    name: str = Field(primary_key=True, max_length=40)
    holder: str = Field(max_length=300)
    acquired_at: datetime = _ts()
    renewed_at: datetime = _ts()
    expires_at: datetime = _ts()


class AlertOutbox(SQLModel, table=True):
    __tablename__ = "alert_outbox"
    __table_args__ = (sa.Index("ix_alert_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _ts()
    sink: str = Field(max_length=100)
    severity: str = Field(max_length=20)
    kind: str = Field(default="trigger", max_length=20)  # trigger | resolve | info
    title: str = Field(default="", max_length=300)  # the alert's, as operators list it
    dedup_key: str = Field(max_length=200)
    payload: dict = _json(default_factory=dict)
    status: str = Field(default="pending", max_length=20)  # pending | sent | dead | dismissed
    attempts: int = 0
    next_attempt_at: datetime = _ts()
    last_error: str | None = None
    sent_at: datetime | None = _ts(default=None, nullable=True)


class JobRun(SQLModel, table=True):
    """One run of a scheduled job for one slot; the unique key makes a second run of a slot impossible."""

    __tablename__ = "job_runs"
    __table_args__ = (sa.UniqueConstraint("job_id", "slot", name="uq_job_runs_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=60)
    slot: str = Field(max_length=40)  # the scheduled time the run is for, ISO 8601
    holder: str = Field(max_length=300)
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts(default=None, nullable=True)
    outcome: str | None = None



# --- governed actions (DESIGN.md v2, "Governed actions") ------------------------------------------


class Grant(SQLModel, table=True):
    """An ``allow`` of the gate: budget taken from the moment it is issued, closed by the agent's outcome
    (a command event whose id is the grant's id) or by expiry (an unknown outcome)."""

    __tablename__ = "grants"
    __table_args__ = (
        sa.Index("ix_grants_type_granted", "command_type", "granted_at"),
        sa.Index("ix_grants_service_type_granted", "service", "command_type", "granted_at"),
        sa.Index("ix_grants_status_expires", "status", "expires_at"),
        # the grants in flight of a type (the gate's max_concurrent): only open grants, so a count reads the few
        # in flight instead of intersecting every grant of the type with every open one (migration 0024)
        sa.Index("ix_grants_open_type_expires", "command_type", "expires_at",
                 postgresql_where=sa.text("status = 'granted'"), sqlite_where=sa.text("status = 'granted'")),
    )

    id: str = Field(primary_key=True, max_length=40)
    command_type: str = Field(max_length=200)
    service: str | None = Field(default=None, max_length=200)
    agent: str = Field(max_length=200)
    confidence: float | None = None
    action_class: str | None = Field(default=None, max_length=200)
    policy: str | None = Field(default=None, max_length=200)
    granted_at: datetime = _ts()
    expires_at: datetime = _ts()
    status: str = Field(default="granted", max_length=20)  # granted|succeeded|failed|rolled_back|expired|released
    outcome_at: datetime | None = _ts(default=None, nullable=True)
    request_id: str | None = Field(default=None, max_length=40)  # set when a human approved it
    approved_by: str | None = Field(default=None, max_length=200)
    requested_by: str | None = Field(default=None, max_length=200)  # the operator behind the ask
    report: dict | None = _json(default=None, nullable=True)  # `govcon run`'s action report


class ActionRequest(SQLModel, table=True):
    """A gate ask answered ``needs_approval`` and queued for a human (seed 004's "act with confirmation")."""

    __tablename__ = "action_requests"
    __table_args__ = (
        sa.Index("ix_action_requests_status_expires", "status", "expires_at"),
        sa.Index("ix_action_requests_requested", "requested_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    command_type: str = Field(max_length=200)
    service: str | None = Field(default=None, max_length=200)
    agent: str = Field(max_length=200)
    confidence: float | None = None
    action_class: str | None = Field(default=None, max_length=200)
    policy: str | None = Field(default=None, max_length=200)
    reason: str = ""  # why the gate wanted a human
    notification_level: str = Field(default="info", max_length=20)
    approver_roles: list = _json(default_factory=list)
    requested_by: str = Field(max_length=200)
    requested_at: datetime = _ts()
    expires_at: datetime = _ts()
    status: str = Field(default="pending", max_length=20)  # pending | approved | rejected | expired
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = _ts(default=None, nullable=True)
    note: str | None = None
    grant_id: str | None = Field(default=None, max_length=40)


class GateDecisionLog(SQLModel, table=True):
    """Every gate decision with its inputs and reason, so that after an incident anyone can say why an
    agent was allowed (or not) to act. Pruned by retention."""

    __tablename__ = "gate_decisions"
    __table_args__ = (sa.Index("ix_gate_decisions_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    command_type: str = Field(max_length=200)
    service: str | None = Field(default=None, max_length=200)
    agent: str | None = Field(default=None, max_length=200)
    confidence: float | None = None
    action_class: str | None = Field(default=None, max_length=200)
    decision: str = Field(max_length=20)
    reason: str = ""
    policy: str | None = Field(default=None, max_length=200)
    grant_id: str | None = Field(default=None, max_length=40)
    request_id: str | None = Field(default=None, max_length=40)


class Agent(SQLModel, table=True):
    """An agent and its lease (a dead-man's switch, DESIGN.md "Agents and leases"): renewed by its
    heartbeats, judged by the store's clock. ``lapse_alerted_for`` is the lease expiry whose lapse was
    alerted, so that one lapse raises one alert."""

    __tablename__ = "agents"
    __table_args__ = (sa.Index("ix_agents_lease_expires", "lease_expires_at"),)

    name: str = Field(primary_key=True, max_length=200)
    first_seen_at: datetime = _ts()
    last_beat_at: datetime = _ts()
    lease_expires_at: datetime = _ts()
    ttl_seconds: int = 60
    beats: int = 0
    last_operator: str = Field(max_length=200)  # the operator of the token behind the last beat
    last_token_id: str | None = Field(default=None, max_length=32)
    lapse_alerted_for: datetime | None = _ts(default=None, nullable=True)


ALL_TABLES = SQLModel.metadata


# --- policies and alert routing (issue 13 pt 2: they live in the store, not in each caller's config) -----


class GatePolicy(SQLModel, table=True):
    """A gate policy (engine/policies.py). ``spec`` holds its settings as the config file spells them
    (``[policies.NAME]``'s keys), validated by engine.policies.load_policies before it is stored."""

    __tablename__ = "gate_policies"

    name: str = Field(primary_key=True, max_length=200)
    spec: dict = _json(default_factory=dict)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)
    updated_at: datetime = _ts()
    updated_by: str = Field(max_length=200)


class AlertSinkRow(SQLModel, table=True):
    """An alert sink and its routing (engine/alerts.py). ``settings`` is what may be shown (severities,
    timeout, reports, mail addresses, the password's environment variable); ``secret`` holds the URL and
    the PagerDuty routing key, which are never printed back (shown masked, audited by fingerprint)."""

    __tablename__ = "alert_sinks"

    name: str = Field(primary_key=True, max_length=100)
    kind: str = Field(max_length=20)
    settings: dict = _json(default_factory=dict)
    secret: dict = _json(default_factory=dict)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)
    updated_at: datetime = _ts()
    updated_by: str = Field(max_length=200)
