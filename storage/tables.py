"""Core tables of the govcon schema. GENERATED from storage/models.py by tools/generate_tables.py: do not edit.

The runtime (engine/, storage/, console/, screens/) imports these plain SQLAlchemy Core tables only: SQLModel's
ORM and pydantic cost ~130 ms at import, and the runtime never uses more than ``sa.select``, inserts and updates
on tables. storage/models.py stays the schema's source of truth (Alembic migrates from it); after changing it,
run ``python tools/generate_tables.py``. tests/unit/test_tables.py checks that this file is what the generator
renders and that both describe the same schema.
"""

import functools

import sqlalchemy as sa

from storage.types import UTCDateTime

metadata = sa.MetaData()

action_requests = sa.Table(
    "action_requests",
    metadata,
    sa.Column("id", sa.String(length=40), primary_key=True, nullable=False),
    sa.Column("command_type", sa.String(length=200), nullable=False),
    sa.Column("service", sa.String(length=200), nullable=True),
    sa.Column("agent", sa.String(length=200), nullable=False),
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.Column("action_class", sa.String(length=200), nullable=True),
    sa.Column("policy", sa.String(length=200), nullable=True),
    sa.Column("reason", sa.String(), nullable=False, default=""),
    sa.Column("notification_level", sa.String(length=20), nullable=False, default="info"),
    sa.Column("approver_roles", sa.JSON(), nullable=False, default=list),
    sa.Column("requested_by", sa.String(length=200), nullable=False),
    sa.Column("requested_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(length=20), nullable=False, default="pending"),
    sa.Column("decided_by", sa.String(length=200), nullable=True),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Column("note", sa.String(), nullable=True),
    sa.Column("grant_id", sa.String(length=40), nullable=True),
    sa.Index("ix_action_requests_requested", "requested_at"),
    sa.Index("ix_action_requests_status_expires", "status", "expires_at"),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("name", sa.String(length=200), primary_key=True, nullable=False),
    sa.Column("first_seen_at", UTCDateTime(), nullable=False),
    sa.Column("last_beat_at", UTCDateTime(), nullable=False),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=False),
    sa.Column("ttl_seconds", sa.Integer(), nullable=False, default=60),
    sa.Column("beats", sa.Integer(), nullable=False, default=0),
    sa.Column("last_operator", sa.String(length=200), nullable=False),
    sa.Column("last_token_id", sa.String(length=32), nullable=True),
    sa.Column("lapse_alerted_for", UTCDateTime(), nullable=True),
    sa.Index("ix_agents_lease_expires", "lease_expires_at"),
)

alert_outbox = sa.Table(
    "alert_outbox",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("sink", sa.String(length=100), nullable=False),
    sa.Column("severity", sa.String(length=20), nullable=False),
    sa.Column("kind", sa.String(length=20), nullable=False, default="trigger"),
    sa.Column("title", sa.String(length=300), nullable=False, default=""),
    sa.Column("dedup_key", sa.String(length=200), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False, default=dict),
    sa.Column("status", sa.String(length=20), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("last_error", sa.String(), nullable=True),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.Index("ix_alert_outbox_due", "status", "next_attempt_at"),
)

alert_sinks = sa.Table(
    "alert_sinks",
    metadata,
    sa.Column("name", sa.String(length=100), primary_key=True, nullable=False),
    sa.Column("kind", sa.String(length=20), nullable=False),
    sa.Column("settings", sa.JSON(), nullable=False, default=dict),
    sa.Column("secret", sa.JSON(), nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(length=200), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(length=200), nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(length=32), primary_key=True, nullable=False),
    sa.Column("operator", sa.String(length=200), nullable=False),
    sa.Column("token_hash", sa.String(length=128), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(length=200), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("agent", sa.String(length=200), nullable=True),
    sa.UniqueConstraint("token_hash"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("proposal_id", sa.String(length=64), sa.ForeignKey("proposals.id"), nullable=False),
    sa.Column("role", sa.String(length=40), nullable=False),
    sa.Column("approver", sa.String(length=200), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("proposal_id", "role", name="uq_approvals_role"),
    sa.UniqueConstraint("proposal_id", "approver", name="uq_approvals_approver"),
)

attestations = sa.Table(
    "attestations",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("item_slug", sa.String(length=100), nullable=False),
    sa.Column("passed", sa.Boolean(), nullable=False),
    sa.Column("evidence", sa.String(), nullable=False),
    sa.Column("operator", sa.String(length=200), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index("ix_attestations_item_at", "item_slug", "at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer(), primary_key=True, nullable=False, autoincrement=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(length=200), nullable=False),
    sa.Column("action", sa.String(length=60), nullable=False),
    sa.Column("target", sa.String(length=300), nullable=False, default=""),
    sa.Column("reason", sa.String(), nullable=False, default=""),
    sa.Column("details", sa.JSON(), nullable=False, default=dict),
    sa.Column("prev_hash", sa.String(length=64), nullable=False),
    sa.Column("hash", sa.String(length=64), nullable=False),
    sa.Column("key_id", sa.String(length=16), nullable=False, default="", server_default=""),
    sa.Column("state", sa.JSON(), nullable=True),
    sa.Index("ix_audit_log_action", "action"),
    sa.Index("ix_audit_log_at", "at"),
)

breaker_events = sa.Table(
    "breaker_events",
    metadata,
    sa.Column("id", sa.String(length=64), primary_key=True, nullable=False),
    sa.Column("rule_name", sa.String(length=200), nullable=False),
    sa.Column("timestamp", UTCDateTime(), nullable=False),
    sa.Column("severity", sa.String(length=20), nullable=False),
    sa.Column("action", sa.String(length=30), nullable=False),
    sa.Column("command_type", sa.String(length=200), nullable=True),
    sa.Column("observed", sa.JSON(), nullable=False, default=dict),
    sa.Column("shadow", sa.Boolean(), nullable=False, default=False),
    sa.Column("resolved", sa.Boolean(), nullable=False, default=False),
    sa.Column("resolved_by", sa.String(length=200), nullable=True),
    sa.Column("resolved_at", UTCDateTime(), nullable=True),
    sa.Column("note", sa.String(), nullable=True),
    sa.Column("false_positive", sa.Boolean(), nullable=False, default=False),
    sa.Index("ix_breaker_events_open", "resolved", "rule_name", "command_type"),
    sa.Index("ix_breaker_events_timestamp", "timestamp"),
)

breaker_rules = sa.Table(
    "breaker_rules",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False, default=True),
    sa.Column("condition", sa.String(length=1000), nullable=False),
    sa.Column("window", sa.String(length=20), nullable=False),
    sa.Column("action", sa.String(length=30), nullable=False),
    sa.Column("alert_severity", sa.String(length=20), nullable=False),
    sa.Column("min_samples", sa.Integer(), nullable=False, default=10),
    sa.Column("shadow", sa.Boolean(), nullable=False, default=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("recovery", sa.String(length=20), nullable=False, default="half_open"),
    sa.Column("cooldown", sa.String(length=20), nullable=True),
    sa.Column("probes", sa.Integer(), nullable=False, default=3),
    sa.UniqueConstraint("name"),
)

command_events = sa.Table(
    "command_events",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("command_id", sa.String(length=200), nullable=False),
    sa.Column("command_type", sa.String(length=200), nullable=False),
    sa.Column("status", sa.String(length=20), nullable=False),
    sa.Column("autonomous", sa.Boolean(), nullable=False, default=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("ingested_at", UTCDateTime(), nullable=False),
    sa.Column("service", sa.String(length=200), nullable=True),
    sa.Column("judged_on_arrival", sa.Boolean(), nullable=False, default=False),
    sa.UniqueConstraint("command_id", "status", name="uq_command_events_id_status"),
    sa.Index("ix_command_events_at_status", "at", "status", "command_id"),
    sa.Index("ix_command_events_type_at", "command_type", "at", "autonomous", "status", "command_id"),
)

command_rollups = sa.Table(
    "command_rollups",
    metadata,
    sa.Column("command_type", sa.String(length=200), primary_key=True, nullable=False),
    sa.Column("hour", sa.Integer(), primary_key=True, nullable=False, autoincrement=False),
    sa.Column("autonomous", sa.Integer(), primary_key=True, nullable=False, autoincrement=False),
    sa.Column("status", sa.String(length=20), primary_key=True, nullable=False),
    sa.Column("prev_hour", sa.Integer(), primary_key=True, nullable=False, autoincrement=False),
    sa.Column("n", sa.Integer(), nullable=False, default=0),
)

eval_coverage = sa.Table(
    "eval_coverage",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("event_key", sa.String(length=300), nullable=False),
    sa.Column("covered", sa.Integer(), nullable=False),
    sa.Column("total", sa.Integer(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("ingested_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("event_key"),
    sa.Index("ix_eval_coverage_at", "at"),
)

gate_decisions = sa.Table(
    "gate_decisions",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("command_type", sa.String(length=200), nullable=False),
    sa.Column("service", sa.String(length=200), nullable=True),
    sa.Column("agent", sa.String(length=200), nullable=True),
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.Column("action_class", sa.String(length=200), nullable=True),
    sa.Column("decision", sa.String(length=20), nullable=False),
    sa.Column("reason", sa.String(), nullable=False, default=""),
    sa.Column("policy", sa.String(length=200), nullable=True),
    sa.Column("grant_id", sa.String(length=40), nullable=True),
    sa.Column("request_id", sa.String(length=40), nullable=True),
    sa.Index("ix_gate_decisions_at", "at"),
)

gate_policies = sa.Table(
    "gate_policies",
    metadata,
    sa.Column("name", sa.String(length=200), primary_key=True, nullable=False),
    sa.Column("spec", sa.JSON(), nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(length=200), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(length=200), nullable=False),
)

governance_state = sa.Table(
    "governance_state",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False, default=1),
    sa.Column("current_phase", sa.String(length=5), nullable=False),
    sa.Column("phase_started_at", UTCDateTime(), nullable=False),
    sa.Column("adopted_at", UTCDateTime(), nullable=False),
    sa.Column("command_whitelist", sa.JSON(), nullable=False, default=list),
    sa.Column("paused_command_types", sa.JSON(), nullable=False, default=list),
    sa.Column("kill_switch_engaged", sa.Boolean(), nullable=False, default=False),
    sa.Column("kill_switch_by", sa.String(), nullable=True),
    sa.Column("kill_switch_at", UTCDateTime(), nullable=True),
    sa.Column("kill_switch_reason", sa.String(), nullable=True),
    sa.Column("breaker_mode", sa.String(length=10), nullable=False, default="enforce"),
    sa.Column("validation_until", UTCDateTime(), nullable=True),
    sa.Column("validation_proposal_id", sa.String(length=64), nullable=True),
    sa.Column("four_eyes_relaxed", sa.Boolean(), nullable=False, default=False),
    sa.Column("mode", sa.String(length=10), nullable=False, default="normal"),
    sa.Column("audit_head_seq", sa.Integer(), nullable=False, default=0),
    sa.Column("audit_head_hash", sa.String(length=64), nullable=False, default=""),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(length=200), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("policies_version", sa.Integer(), nullable=False, default=0, server_default="0"),
    sa.Column("sinks_version", sa.Integer(), nullable=False, default=0, server_default="0"),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(length=40), primary_key=True, nullable=False),
    sa.Column("command_type", sa.String(length=200), nullable=False),
    sa.Column("service", sa.String(length=200), nullable=True),
    sa.Column("agent", sa.String(length=200), nullable=False),
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.Column("action_class", sa.String(length=200), nullable=True),
    sa.Column("policy", sa.String(length=200), nullable=True),
    sa.Column("granted_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(length=20), nullable=False, default="granted"),
    sa.Column("outcome_at", UTCDateTime(), nullable=True),
    sa.Column("request_id", sa.String(length=40), nullable=True),
    sa.Column("approved_by", sa.String(length=200), nullable=True),
    sa.Column("requested_by", sa.String(length=200), nullable=True),
    sa.Column("report", sa.JSON(), nullable=True),
    sa.Index("ix_grants_service_type_granted", "service", "command_type", "granted_at"),
    sa.Index("ix_grants_status_expires", "status", "expires_at"),
    sa.Index("ix_grants_type_granted", "command_type", "granted_at"),
)

half_open = sa.Table(
    "half_open",
    metadata,
    sa.Column("command_type", sa.String(length=200), primary_key=True, nullable=False),
    sa.Column("since", UTCDateTime(), nullable=False),
    sa.Column("probes_left", sa.Integer(), nullable=False),
    sa.Column("probe_grant_id", sa.String(length=40), nullable=True),
    sa.Column("event_id", sa.String(length=64), nullable=False),
    sa.Column("rule_name", sa.String(length=200), nullable=False),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("incident_id", sa.String(length=200), nullable=False),
    sa.Column("severity", sa.String(length=20), nullable=False),
    sa.Column("command_id", sa.String(length=200), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("ingested_at", UTCDateTime(), nullable=False),
    sa.Column("service", sa.String(length=200), nullable=True),
    sa.Column("judged_on_arrival", sa.Boolean(), nullable=False, default=False),
    sa.UniqueConstraint("incident_id"),
    sa.Index("ix_incidents_at", "at"),
    sa.Index("ix_incidents_command_id", "command_id"),
)

job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("job_id", sa.String(length=60), nullable=False),
    sa.Column("slot", sa.String(length=40), nullable=False),
    sa.Column("holder", sa.String(length=300), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("outcome", sa.String(), nullable=True),
    sa.UniqueConstraint("job_id", "slot", name="uq_job_runs_slot"),
)

kill_switch_drills = sa.Table(
    "kill_switch_drills",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("operator", sa.String(length=200), nullable=False),
    sa.Column("passed", sa.Boolean(), nullable=False),
    sa.Column("details", sa.String(), nullable=False, default=""),
    sa.Index("ix_kill_switch_drills_at", "at"),
)

leader_lease = sa.Table(
    "leader_lease",
    metadata,
    sa.Column("name", sa.String(length=40), primary_key=True, nullable=False),
    sa.Column("holder", sa.String(length=300), nullable=False),
    sa.Column("acquired_at", UTCDateTime(), nullable=False),
    sa.Column("renewed_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

metrics_snapshots = sa.Table(
    "metrics_snapshots",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("taken_at", UTCDateTime(), nullable=False),
    sa.Column("period_start", UTCDateTime(), nullable=False),
    sa.Column("period_end", UTCDateTime(), nullable=False),
    sa.Column("total", sa.Integer(), nullable=False, default=0),
    sa.Column("success_rate", sa.Float(), nullable=True),
    sa.Column("approval_rate", sa.Float(), nullable=True),
    sa.Column("rollback_rate", sa.Float(), nullable=True),
    sa.Column("error_rate", sa.Float(), nullable=True),
    sa.Column("data", sa.JSON(), nullable=False, default=dict),
    sa.Index("ix_metrics_snapshots_taken_at", "taken_at"),
)

phase_history = sa.Table(
    "phase_history",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("phase", sa.String(length=5), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("actor", sa.String(length=200), nullable=False),
    sa.Column("reason", sa.String(), nullable=False, default=""),
    sa.Column("proposal_id", sa.String(length=64), nullable=True),
    sa.Column("breaker_event_id", sa.String(length=64), nullable=True),
)

proposals = sa.Table(
    "proposals",
    metadata,
    sa.Column("id", sa.String(length=64), primary_key=True, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("proposed_by", sa.String(length=200), nullable=False),
    sa.Column("current_phase", sa.String(length=5), nullable=False),
    sa.Column("target_phase", sa.String(length=5), nullable=False),
    sa.Column("commands_to_whitelist", sa.JSON(), nullable=False, default=list),
    sa.Column("validation_period_days", sa.Integer(), nullable=False, default=14),
    sa.Column("rationale", sa.JSON(), nullable=False, default=dict),
    sa.Column("risk_assessment", sa.JSON(), nullable=False, default=dict),
    sa.Column("required_approvals", sa.JSON(), nullable=False, default=list),
    sa.Column("status", sa.String(length=20), nullable=False, default="pending"),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Column("decided_by", sa.String(length=200), nullable=True),
    sa.Column("reason", sa.String(), nullable=True),
    sa.Column("applied_at", UTCDateTime(), nullable=True),
    sa.Column("expiry_warned_at", UTCDateTime(), nullable=True),
    sa.Index("ix_proposals_created_at", "created_at"),
    sa.Index("ix_proposals_status", "status"),
)

readiness_assessments = sa.Table(
    "readiness_assessments",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("taken_at", UTCDateTime(), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("ready", sa.Boolean(), nullable=False),
    sa.Column("technical_score", sa.Float(), nullable=False),
    sa.Column("process_score", sa.Float(), nullable=False),
    sa.Column("organizational_score", sa.Float(), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False, default=dict),
    sa.Index("ix_readiness_assessments_taken_at", "taken_at"),
)

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.String(length=64), primary_key=True, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("kind", sa.String(length=20), nullable=False, default="weekly"),
    sa.Column("recommendation", sa.String(length=20), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False, default=dict),
    sa.Column("markdown", sa.String(), nullable=False, default=""),
    sa.Index("ix_reports_created_at", "created_at"),
)

role_grants = sa.Table(
    "role_grants",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("operator", sa.String(length=200), nullable=False),
    sa.Column("role", sa.String(length=40), nullable=False),
    sa.Column("granted_by", sa.String(length=200), nullable=False),
    sa.Column("granted_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("operator", "role", name="uq_role_grants"),
    sa.Index("ix_role_grants_operator", "operator"),
)

safety_events = sa.Table(
    "safety_events",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
    sa.Column("event_key", sa.String(length=300), nullable=False),
    sa.Column("type", sa.String(length=40), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("ingested_at", UTCDateTime(), nullable=False),
    sa.Column("judged_on_arrival", sa.Boolean(), nullable=False, default=False),
    sa.UniqueConstraint("event_key"),
    sa.Index("ix_safety_events_at", "at"),
)


@functools.cache
def partial_indexes() -> tuple[sa.Index, ...]:
    """The partial indexes (a WHERE clause per dialect), added to their tables on the first call.

    Not built at import: SQLAlchemy checks an index's ``postgresql_where`` by importing its PostgreSQL dialect
    (~20 ms), which a process on a SQLite store never needs otherwise, and the runtime creates no schema from
    these tables (migrations do). tests/unit/test_tables.py builds them to compare the DDL with the models'.
    """
    return (
        sa.Index(
            "ix_command_events_arrivals",
            command_events.c["ingested_at"],
            command_events.c["at"],
            postgresql_where=sa.text("judged_on_arrival IS TRUE"),
            sqlite_where=sa.text("judged_on_arrival IS 1"),
        ),
        sa.Index(
            "ix_grants_open_type_expires",
            grants.c["command_type"],
            grants.c["expires_at"],
            postgresql_where=sa.text("status = 'granted'"),
            sqlite_where=sa.text("status = 'granted'"),
        ),
        sa.Index(
            "ix_incidents_arrivals",
            incidents.c["ingested_at"],
            incidents.c["at"],
            postgresql_where=sa.text("judged_on_arrival IS TRUE"),
            sqlite_where=sa.text("judged_on_arrival IS 1"),
        ),
        sa.Index(
            "ix_safety_events_arrivals",
            safety_events.c["ingested_at"],
            safety_events.c["at"],
            postgresql_where=sa.text("judged_on_arrival IS TRUE"),
            sqlite_where=sa.text("judged_on_arrival IS 1"),
        ),
    )


ALL_TABLES = metadata
