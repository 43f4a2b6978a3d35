"""Scope-expansion proposals (seed 000 ScopeExpansionProposal) and their role approvals.

The governance cycle drafts a proposal; approvers holding the required roles approve it, one role per
person, never the person who triggered it; the last approval applies the transition — phase, phase
history, whitelist, validation period, audit — in the same transaction. Every write is serialised by
the store (storage.db.write_connection), so two consoles approving at once never lose an approval and
never apply twice; the unique constraints on (proposal, role) and (proposal, approver) back that up.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Row

from engine import access
from engine.alerts import Alert
from engine.breakers import require_initialised
from engine.clock import Clock, isoformat
from engine.domain import REQUIRED_APPROVALS, BreakerAction, Phase, ProposalStatus, next_phase
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.metrics import CommandCounts
from engine.readiness import READY_THRESHOLD, ReadinessPolicy, ReadinessReport, assess_in, at_l3_since
from storage import audit, breaker_repo, events_repo, identity_repo, proposals_repo, state_repo
from storage.store import Store

AGENT = "autonomy-governance-agent"
VALIDATION_DAYS: dict[str, int] = {Phase.L3_PLUS: 14, Phase.L4: 30, Phase.L4_PLUS: 30, Phase.L5: 60}
RISK_LEVEL: dict[str, str] = {Phase.L3_PLUS: "low", Phase.L4: "medium", Phase.L4_PLUS: "high", Phase.L5: "high"}


@dataclass(frozen=True)
class ProposalPolicy:
    lookback: timedelta = timedelta(days=30)
    min_human_approved: int = 20          # human-approved executions of a type in the lookback
    min_success_rate: float = 0.995       # readiness threshold: success rate > 99.5%
    max_rollback_rate: float = 0.02       # readiness threshold: rollback rate < 2%
    ttl: timedelta = timedelta(days=7)    # a pending proposal expires after this
    warn_before: timedelta = timedelta(days=1)


def select_commands(conn: Connection, now: datetime, policy: ProposalPolicy,
                    state: Row) -> tuple[list[str], list[dict]]:
    """Choose the command types to whitelist from the evidence, explaining every choice."""
    start = now - policy.lookback
    by_type = {t: CommandCounts.from_status_counts(c)
               for t, c in events_repo.command_counts_by_type(conn, start, now).items()}
    approved = events_repo.human_approved_by_type(conn, start, now)
    incidents = events_repo.incident_command_types(conn, start, now)
    paused = set(state.paused_command_types or [])
    whitelisted = set(state.command_whitelist or [])
    chosen, choices = [], []
    days = policy.lookback.days
    for ctype in sorted(by_type):
        counts = by_type[ctype]
        rates = counts.rates()
        n_approved = approved.get(ctype, 0)
        success, rollback = rates["successRate"], rates["rollbackRate"]
        why_not = None
        if ctype in whitelisted:
            why_not = "already whitelisted"
        elif ctype in paused:
            why_not = "paused by a circuit breaker"
        elif n_approved < policy.min_human_approved:
            why_not = f"only {n_approved} human-approved executions in {days} days (needs {policy.min_human_approved})"
        elif success is None or success <= policy.min_success_rate:
            why_not = f"success rate {_pct(success)} (needs > {policy.min_success_rate:.1%})"
        elif rollback is not None and rollback >= policy.max_rollback_rate:
            why_not = f"rollback rate {_pct(rollback)} (needs < {policy.max_rollback_rate:.0%})"
        elif ctype in incidents:
            why_not = f"incidents attributed: {', '.join(sorted(incidents[ctype])[:3])}"
        if why_not is None:
            chosen.append(ctype)
            reason = (f"{n_approved} human-approved executions in {days} days, success rate {_pct(success)}, "
                      f"rollback rate {_pct(rollback or 0.0)}, no incident attributed, not paused")
        else:
            reason = why_not
        choices.append({"commandType": ctype, "chosen": why_not is None, "reason": reason,
                        "humanApproved": n_approved, "successRate": success, "rollbackRate": rollback})
    return chosen, choices


def _pct(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.2%}"


def proposal_row(conn: Connection, proposal_id: str) -> Row:
    row = proposals_repo.get(conn, proposal_id)
    if row is None:
        raise NotFound(f"no proposal {proposal_id!r}; see `govcon proposals list`")
    return row


def proposal_json(row: Row, approvals: Sequence[Row]) -> dict[str, Any]:
    required = list(row.required_approvals or [])
    done = {a.role for a in approvals}
    return {
        "proposalId": row.id,
        "timestamp": isoformat(row.created_at),
        "proposedBy": AGENT,
        "triggeredBy": row.proposed_by,
        "expansion": {"currentPhase": row.current_phase, "targetPhase": row.target_phase,
                      "commandsToWhitelist": list(row.commands_to_whitelist or []),
                      "validationPeriod": row.validation_period_days},
        "rationale": row.rationale,
        "riskAssessment": row.risk_assessment,
        "requiredApprovals": required,
        "status": row.status,
        "approvals": [{"role": a.role, "approver": a.approver, "at": isoformat(a.at)} for a in approvals],
        "stillNeeded": [r for r in required if r not in done],
        "expiresAt": isoformat(row.expires_at),
        "decidedAt": isoformat(row.decided_at),
        "decidedBy": row.decided_by,
        "reason": row.reason,
        "appliedAt": isoformat(row.applied_at),
    }


def draft(conn: Connection, *, now: datetime, actor: str, state: Row, readiness: ReadinessReport,
          metrics_json: dict[str, Any], policy: ProposalPolicy) -> tuple[str | None, list[dict], str]:
    """Insert a pending proposal when the evidence supports one; returns (id or None, choices, why)."""
    target = next_phase(state.current_phase)
    if target is None:
        return None, [], f"{state.current_phase} is the last phase"
    chosen, choices = select_commands(conn, now, policy, state)
    if not chosen:
        return None, choices, "no command type qualifies for the whitelist yet"
    required = list(REQUIRED_APPROVALS[(state.current_phase, target)])
    days = VALIDATION_DAYS[target]
    level = RISK_LEVEL[target]
    if len(chosen) > 5 and level == "low":
        level = "medium"
    enforcing = [r for r in breaker_repo.list_rules(conn, enabled_only=True) if not r.shadow]
    rules = [r.name for r in enforcing]
    reverting = [r.name for r in enforcing if r.action == BreakerAction.REVERT_TO_L3]
    drill = state_repo.last_drill(conn)
    proposal_id = "prop-" + uuid.uuid4().hex[:10]
    achievements = [f"readiness {readiness.score:.0%} with no blockers",
                    f"success rate {_pct(metrics_json['rates']['successRate'])} over "
                    f"{metrics_json['commands']['total']} commands in {policy.lookback.days} days",
                    f"{(now - at_l3_since(conn, state)).days} days under governance since entering L3"]
    rationale = {"metrics": metrics_json, "readiness": {"score": readiness.score, "ready": readiness.ready,
                                                         "blockers": readiness.blockers},
                 "keyAchievements": achievements, "commandChoices": choices}
    risk = {"level": level,
            "mitigations": [f"circuit breakers enabled: {', '.join(rules)}",
                            f"kill switch drilled {drill.at:%Y-%m-%d}" if drill else "kill switch available",
                            f"{days}-day validation period with daily review",
                            f"whitelist limited to {len(chosen)} command types with clean records"],
            "rollbackPlan": ("`govcon revert --reason ...` (console key L) returns to L3 and clears the whitelist"
                             + (f"; the breakers {', '.join(repr(n) for n in reverting)} do so automatically"
                                if reverting else "; no enforcing breaker reverts automatically"))}
    proposals_repo.insert(conn, id=proposal_id, created_at=now, proposed_by=actor, current_phase=state.current_phase,
                          target_phase=target, commands_to_whitelist=chosen, validation_period_days=days,
                          rationale=rationale, risk_assessment=risk, required_approvals=required,
                          status=ProposalStatus.PENDING, expires_at=now + policy.ttl)
    audit.append(conn, at=now, actor=actor, action="proposal.create", target=proposal_id,
                 details={"from": state.current_phase, "to": target, "commands": chosen, "required": required})
    return proposal_id, choices, f"proposed {state.current_phase} -> {target}"


MAX_VALIDATION_DAYS = 365


class ProposalBook:
    def __init__(self, store: Store, clock: Clock, *, policy: ProposalPolicy | None = None,
                 enqueue_alert: Callable[[Connection, Alert, bool], Any] | None = None,
                 readiness_policy: ReadinessPolicy | None = None, kill_marker: Any = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy or ProposalPolicy()
        self.enqueue_alert = enqueue_alert
        self.readiness_policy = readiness_policy or ReadinessPolicy()
        self.kill_marker = kill_marker  # engine/kill_marker.py: the switch's file engages it too

    def kill_switch_engaged(self, state: Row) -> str | None:
        """Who engaged the kill switch and why, from the store or its marker file; None when it is released.
        Autonomy is not expanded under it: releasing the switch would bring the wider scope back at once."""
        if state.kill_switch_engaged:
            return f"by {state.kill_switch_by}: {state.kill_switch_reason}"
        marker = self.kill_marker.engaged() if self.kill_marker is not None else None
        if marker is not None:
            return f"by its marker file {marker.path}"
        return None

    def list(self, *, status: str | None = None) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = proposals_repo.list_proposals(conn, status=status)
            approvals = proposals_repo.approvals_for(conn, [r.id for r in rows])
        return [proposal_json(r, approvals[r.id]) for r in rows]

    def show(self, proposal_id: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = self._get(conn, proposal_id)
            return proposal_json(row, proposals_repo.approvals(conn, proposal_id))

    def _get(self, conn: Connection, proposal_id: str) -> Row:
        return proposal_row(conn, proposal_id)

    def _pending(self, conn: Connection, proposal_id: str, now: datetime) -> Row:
        row = self._get(conn, proposal_id)
        if row.status != ProposalStatus.PENDING:
            raise Conflict(f"proposal {proposal_id} is {row.status}, not pending")
        if row.expires_at is not None and row.expires_at <= now:
            raise Conflict(f"proposal {proposal_id} expired at {isoformat(row.expires_at)}; "
                           "the next governance cycle may draft a new one")
        return row

    def approve(self, actor: str, proposal_id: str, role: str) -> dict[str, Any]:
        access.check_role_name(role)
        now = self.clock.now()
        with self.store.write() as conn:
            row = self._pending(conn, proposal_id, now)
            state = require_initialised(conn)
            required = list(row.required_approvals or [])
            if role not in required:
                raise InvalidInput(f"{role} is not among the roles this proposal needs ({', '.join(required)})")
            if role not in identity_repo.roles_of(conn, actor):
                raise PermissionDenied(f"approving as {role} needs the role {role}; {actor} does not hold it")
            relaxed = bool(state.four_eyes_relaxed)
            if actor == row.proposed_by and not relaxed:
                raise PermissionDenied(f"{actor} triggered this proposal and may not approve it (four eyes)")
            engaged = self.kill_switch_engaged(state)
            if engaged is not None:
                raise Conflict(f"the kill switch is engaged ({engaged}): autonomy is not expanded under it; "
                               "approve after it is released, or reject the proposal")
            blocking = breaker_repo.count_unresolved(conn, severities=("critical", "high"))
            if blocking:
                raise Conflict(f"{blocking} unresolved critical or high circuit-breaker events are open: "
                               "resolve them before approving (`govcon events list --unresolved`)")
            # the runbook's first question, asked now; inside the write transaction so that what is approved
            # is what was assessed (it holds the store's write lock for the assessment, ~70-240 ms on a
            # 1M-event store: approvals are rare)
            readiness = assess_in(conn, now, self.readiness_policy)
            if not readiness.ready:
                why = f"blockers: {', '.join(readiness.blockers)}" if readiness.blockers else \
                    f"below the {READY_THRESHOLD:.0%} a proposal needs"
                raise Conflict(f"readiness is {readiness.score:.1%} now ({why}): approvals wait until readiness "
                               "allows expansion again (`govcon readiness`), or reject the proposal")
            approvals = proposals_repo.approvals(conn, proposal_id)
            for a in approvals:
                if a.role == role:
                    raise Conflict(f"{role} has approved already (by {a.approver} at {isoformat(a.at)})")
                if a.approver == actor and not relaxed:
                    raise PermissionDenied(f"{actor} approved already as {a.role}; one person fills at most "
                                           "one role on a proposal")
            proposals_repo.add_approval(conn, proposal_id=proposal_id, role=role, approver=actor, at=now)
            audit.append(conn, at=now, actor=actor, action="proposal.approve", target=proposal_id,
                         details={"role": role})
            done = {a.role for a in approvals} | {role}
            if set(required) <= done:
                self._apply(conn, row, state, actor, now)
            return proposal_json(self._get(conn, proposal_id), proposals_repo.approvals(conn, proposal_id))

    def _apply(self, conn: Connection, row: Row, state: Row, actor: str, now: datetime) -> None:
        if state.current_phase != row.current_phase:
            raise Conflict(f"the phase is {state.current_phase} now, not {row.current_phase} as when proposal "
                           f"{row.id} was drafted: reject it and run the cycle again")
        whitelist = list(dict.fromkeys([*(state.command_whitelist or []), *(row.commands_to_whitelist or [])]))
        until = now + timedelta(days=row.validation_period_days)
        state_repo.update_state(conn, current_phase=row.target_phase, phase_started_at=now,
                                command_whitelist=whitelist, validation_until=until,
                                validation_proposal_id=row.id, updated_at=now)
        state_repo.start_phase(conn, phase=row.target_phase, at=now, actor=actor,
                               reason=f"proposal {row.id} approved", proposal_id=row.id)
        proposals_repo.update(conn, row.id, status=ProposalStatus.APPROVED, decided_at=now, decided_by=actor,
                              applied_at=now)
        audit.append(conn, at=now, actor=actor, action="proposal.apply", target=row.id,
                     details={"from": row.current_phase, "to": row.target_phase, "whitelist": whitelist,
                              "validationUntil": isoformat(until)})
        if self.enqueue_alert is not None:
            self.enqueue_alert(conn, Alert(kind="info", severity="medium",
                                           title=f"Autonomy expanded: {row.current_phase} -> {row.target_phase}",
                                           body=f"Proposal {row.id} approved; whitelist: {', '.join(whitelist)}; "
                                                f"validation until {until:%Y-%m-%d}",
                                           dedup_key=f"govcon-proposal-{row.id}", at=now), False)

    def reject(self, actor: str, proposal_id: str, reason: str) -> dict[str, Any]:
        if not reason or not reason.strip():
            raise InvalidInput("rejecting a proposal needs --reason")
        now = self.clock.now()
        with self.store.write() as conn:
            row = self._pending(conn, proposal_id, now)
            held = identity_repo.roles_of(conn, actor)
            required = list(row.required_approvals or [])
            if not held.intersection(required):
                raise PermissionDenied(f"rejecting needs one of the roles this proposal needs "
                                       f"({', '.join(required)}); {actor} holds {', '.join(sorted(held)) or 'none'}")
            proposals_repo.update(conn, proposal_id, status=ProposalStatus.REJECTED, decided_at=now, decided_by=actor,
                                  reason=reason.strip())
            audit.append(conn, at=now, actor=actor, action="proposal.reject", target=proposal_id,
                         reason=reason.strip())
            return proposal_json(self._get(conn, proposal_id), proposals_repo.approvals(conn, proposal_id))

    def extend(self, actor: str, proposal_id: str, days: int, reason: str) -> dict[str, Any]:
        """The runbook's "Is the validation period sufficient? No: extend": a pending proposal's
        validation period, or the running one of the proposal being validated, made longer (never
        shorter). Anyone holding one of the roles the proposal needs; one transaction, one audit entry."""
        if not reason or not reason.strip():
            raise InvalidInput("extending a validation period needs --reason")
        if not 1 <= days <= MAX_VALIDATION_DAYS:
            raise InvalidInput(f"--days must be between 1 and {MAX_VALIDATION_DAYS}, not {days}")
        now = self.clock.now()
        with self.store.write() as conn:
            row = self._get(conn, proposal_id)
            held = identity_repo.roles_of(conn, actor)
            required = list(row.required_approvals or [])
            if not held.intersection(required):
                raise PermissionDenied(f"extending needs one of the roles this proposal needs "
                                       f"({', '.join(required)}); {actor} holds {', '.join(sorted(held)) or 'none'}")
            current = row.validation_period_days
            details: dict[str, Any] = {"fromDays": current, "toDays": days}
            if row.status == ProposalStatus.PENDING:
                self._pending(conn, proposal_id, now)
                if days <= current:
                    raise InvalidInput(f"proposal {proposal_id} asks for {current} days of validation already: "
                                       f"extending means more than {current}")
            elif row.status == ProposalStatus.APPROVED:
                state = require_initialised(conn)
                until = state.validation_until
                if state.validation_proposal_id != row.id or until is None or until <= now:
                    raise Conflict(f"proposal {proposal_id} is not being validated now (its validation period "
                                   "is over, or a later change replaced it): there is nothing to extend")
                new_until = row.applied_at + timedelta(days=days)
                if new_until <= until:
                    raise InvalidInput(f"the validation period runs {current} days, until {isoformat(until)}, "
                                       f"already: extending means more than {current}")
                state_repo.update_state(conn, validation_until=new_until, updated_at=now)
                details["validationUntil"] = isoformat(new_until)
            else:
                raise Conflict(f"proposal {proposal_id} is {row.status}: only a pending proposal or the one "
                               "being validated has a validation period to extend")
            proposals_repo.update(conn, proposal_id, validation_period_days=days)
            audit.append(conn, at=now, actor=actor, action="proposal.extend", target=proposal_id,
                         reason=reason.strip(), details=details)
            return proposal_json(self._get(conn, proposal_id), proposals_repo.approvals(conn, proposal_id))

    def expire_due(self) -> dict[str, builtins.list[str]]:  # (list: the method above)
        """Expire pending proposals past their time; warn once about those expiring soon."""
        now = self.clock.now()
        expired, warned = [], []
        with self.store.write() as conn:
            for row in proposals_repo.list_proposals(conn, status=ProposalStatus.PENDING):
                if row.expires_at is None:
                    continue
                if row.expires_at <= now:
                    proposals_repo.update(conn, row.id, status=ProposalStatus.EXPIRED, decided_at=now,
                                          decided_by="scheduler")
                    audit.append(conn, at=now, actor="scheduler", action="proposal.expire", target=row.id)
                    expired.append(row.id)
                elif row.expires_at - now <= self.policy.warn_before and row.expiry_warned_at is None:
                    proposals_repo.update(conn, row.id, expiry_warned_at=now)
                    warned.append(row.id)
                    if self.enqueue_alert is not None:
                        needed = ", ".join(row.required_approvals or [])
                        self.enqueue_alert(conn, Alert(
                            kind="info", severity="low", title=f"Proposal {row.id} expires soon",
                            body=f"{row.current_phase} -> {row.target_phase} expires {row.expires_at:%Y-%m-%d %H:%M} "
                                 f"UTC; approvals needed from: {needed}",
                            dedup_key=f"govcon-proposal-expiry-{row.id}", at=now), False)
        return {"expired": expired, "warned": warned}
