"""The governance facade: one object the CLI, the console and the HTTP API share.

Every state change here is one write transaction holding the change and its audit entry.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import access, recovery
from engine.actions import ActionBook
from engine.agents import AgentBook
from engine.audit_verify import verify
from engine.backtest import Backtester
from engine.breakers import BreakerEngine, event_json
from engine.calibration import CalibrationBook
from engine.clock import Clock, SystemClock, isoformat
from engine.cycle import GovernanceCycle, Reports
from engine.domain import DEFAULT_RULES
from engine.drilldown import Drilldown
from engine.errors import AlreadyInitialised, InvalidInput, NotFound, NotInitialised
from engine.events import DEFAULT_TIMING, EventTiming
from engine.gate import DEFAULT_MINIMAL_ALLOWED, Gate
from engine.ingest import Ingestor, IngestReport
from engine.kill_marker import KillMarker, marker_path_for
from engine.metrics import MetricsCollector
from engine.modes import ModeSwitch
from engine.notifier import Notifier
from engine.outbox import OutboxBook
from engine.overrides import Overrides, kill_switch_json
from engine.policies import PolicyEngine
from engine.proposals import ProposalBook, ProposalPolicy
from engine.readiness import ReadinessAssessor, ReadinessPolicy, find_item
from engine.readiness_explain import ReadinessExplainer
from engine.rules import RuleBook
from engine.store_config import PolicyBook, SinkBook, write_config
from engine.tokens import TokenBook
from engine.trends import predictions, rate_series, trend
from storage import (
    actions_repo,
    audit,
    audit_repo,
    breaker_repo,
    identity_repo,
    maintenance,
    readiness_repo,
    state_repo,
)
from storage.db import StoreUnavailable
from storage.store import Store

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from engine.alerts import Alert
    from engine.audit_verify import VerifyReport
    from engine.policies import Policy


class Governance:
    """Every part, built here, in the order their dependencies need: the gate asks the policies, the
    actions and the agents; the overrides ask the gate (through a lambda: it is built after them)."""

    def __init__(self, store: Store, clock: Clock | None = None, *,
                 readiness_policy: ReadinessPolicy | None = None, sinks: list | None = None,
                 policies: list[Policy] | None = None, proposal_policy: ProposalPolicy | None = None,
                 evaluate_on_ingest: bool = True, minimal_allowed: frozenset[str] | None = None,
                 event_timing: EventTiming = DEFAULT_TIMING, kill_marker: KillMarker | None = None,
                 agent_options: dict[str, Any] | None = None, config_policies: list[Policy] | None = None,
                 config_sinks: list | None = None) -> None:
        """``policies`` and ``sinks``: None (what every caller but a test gives) reads them from the store, so
        that every process on a store decides and routes the same; a list fixes them. ``config_policies`` and
        ``config_sinks``: the config file's, used only while the store has none of its own (a store from
        before revision 0019 until `govcon db import-config`)."""
        self.store = store
        self.clock = clock or SystemClock()
        self.event_timing = event_timing  # [ingest] max_clock_skew, late_horizon: how the ingestor judges stamps
        self.metrics = MetricsCollector(store, self.clock)
        self.readiness = ReadinessAssessor(store, self.clock, readiness_policy)
        # httpx itself loads on the first delivery
        self.notifier = Notifier(store, self.clock, sinks, fallback=config_sinks)
        enqueue = self._enqueue_alert
        self.breakers = BreakerEngine(store, self.clock, enqueue_alert=enqueue)
        #: the kill switch's second path (engine/kill_marker.py): beside a SQLite store by default
        self.kill_marker = kill_marker or KillMarker(marker_path_for(store))
        self.overrides = Overrides(store, self.clock, enqueue_alert=enqueue, kill_marker=self.kill_marker,
                                   gate=lambda: self.gate)
        self.proposals = ProposalBook(store, self.clock, policy=proposal_policy, enqueue_alert=enqueue,
                                      readiness_policy=self.readiness.policy, kill_marker=self.kill_marker)
        self.cycle = GovernanceCycle(store, self.clock, self.readiness, self.proposals, enqueue_alert=enqueue)
        self.reports = Reports(store)
        self.outbox = OutboxBook(store, self.clock)
        self.rules = RuleBook(store, self.clock)
        self.backtester = Backtester(store, self.clock)
        self.policies = (PolicyEngine(list(policies)) if policies is not None
                         else PolicyEngine(store=store, fallback=list(config_policies or [])))
        self.policy_book = PolicyBook(store, self.clock)
        self.sink_book = SinkBook(store, self.clock)
        self.modes = ModeSwitch(store, self.clock, enqueue_alert=enqueue)
        self.actions = ActionBook(store, self.clock, policies=self.policies, enqueue_alert=enqueue,
                                  kill_marker=self.kill_marker)
        self.drilldown = Drilldown(store)
        self.explainer = ReadinessExplainer(self)
        self.calibration = CalibrationBook(store, self.clock)
        #: [agents] require_lease, default_ttl (engine/agents.py)
        self.agents = AgentBook(store, self.clock, enqueue_alert=enqueue, kill_marker=self.kill_marker,
                                **(agent_options or {}))
        self.gate = Gate(store, self.clock, policy=self.policies, actions=self.actions, kill_marker=self.kill_marker,
                         minimal_allowed=DEFAULT_MINIMAL_ALLOWED if minimal_allowed is None else minimal_allowed,
                         leases=self.agents)
        self.tokens = TokenBook(store, self.clock)
        self.ingestor = Ingestor(store, self.clock, timing=event_timing)
        self.ingestor.command_hooks.append(self.actions)  # outcomes close their grants; contradicting ones refused
        if evaluate_on_ingest:  # breakers judge as events arrive, in the ingesting process
            self.ingestor.listeners.append(self._judge_after_ingest)

    def _judge_after_ingest(self, _report: IngestReport) -> None:
        self.breakers.evaluate()

    def close(self) -> None:
        try:  # heartbeats' last beat and count, group-committed (engine/agents.py)
            self.agents.flush()
        except Exception:  # bookkeeping only; the store may be gone already
            pass
        self.actions.decision_log.flush()  # the decision log writes what the gate decided, then the store goes
        self.notifier.close()
        self.store.dispose()

    def _enqueue_alert(self, conn: Connection, alert: Alert, kill_switch_engaged: bool) -> None:
        self.notifier.enqueue(conn, alert, kill_switch_engaged=kill_switch_engaged)

    # --- creating a store ---------------------------------------------------------------------

    def init_store(self, actor: str, *, phase_started: datetime | None = None,
                   extra_roles: tuple[str, ...] = (), four_eyes_relaxed: bool = False,
                   policies: list[Policy] | None = None, sinks: list | None = None,
                   config_path: str = "", policies_from: str | None = None) -> None:
        """Create the governance state at L3; the creator becomes the first admin. ``policies`` and ``sinks``
        (the config file's, `govcon db init`) are seeded into the store in the same transaction, audited;
        from then on the store's decide."""
        now = self.clock.now()
        started = phase_started or now
        if started > now:
            raise InvalidInput(f"--phase-started {isoformat(started)} is in the future")
        with self.store.write() as conn:
            if state_repo.get_state(conn) is not None:
                raise AlreadyInitialised(
                    "this store already has governance state; `db init` only creates new stores "
                    "(use `govcon db migrate` to upgrade one)")
            state_repo.create_state(conn, current_phase="L3", phase_started_at=started, adopted_at=started,
                                    command_whitelist=[], paused_command_types=[], created_at=now,
                                    created_by=actor, updated_at=now, breaker_mode="enforce",
                                    four_eyes_relaxed=four_eyes_relaxed)
            state_repo.start_phase(conn, phase="L3", at=started, actor=actor, reason="store created")
            for rule in DEFAULT_RULES:
                breaker_repo.insert_rule(conn, **rule, created_at=now, updated_at=now)
            for role in ("admin", *extra_roles):
                identity_repo.grant(conn, operator=actor, role=role, by=actor, at=now)
            seeded = write_config(conn, actor=actor, now=now, policies=policies or [], sinks=sinks or [],
                                  source=config_path or "(none)", audited=False)
            details: dict[str, Any] = {"phase": "L3", "phaseStarted": isoformat(started),
                                       "rules": [r["name"] for r in DEFAULT_RULES],
                                       "roles": ["admin", *extra_roles], "fourEyesRelaxed": four_eyes_relaxed,
                                       "policies": seeded["policySpecs"], "sinks": seeded["sinkViews"]}
            if policies:
                details["policiesFrom"] = policies_from or config_path
            if sinks:
                details["sinksFrom"] = config_path
            audit.append(conn, at=now, actor=actor, action="store.init", target="governance", details=details)

    def is_initialised(self) -> bool:
        with self.store.read() as conn:
            return state_repo.get_state(conn) is not None

    # --- reading ------------------------------------------------------------------------------

    def status(self, *, with_readiness: bool = True) -> dict[str, Any]:
        now = self.clock.now()
        with self.store.read() as conn:
            state = state_repo.get_state(conn)
            if state is None:
                raise NotInitialised()
            unresolved = breaker_repo.count_unresolved(conn)
            lease = state_repo.get_lease(conn)
            grants_in_flight = actions_repo.in_flight(conn, None, now)
            pending_requests = actions_repo.count_pending_requests(conn, now)
            half_open = recovery.summary(conn)  # type -> succeeded probes still needed
            marker = self.kill_marker.engaged()
            drain = None  # after the kill switch: what is still in flight, which agents have not heard
            if state.kill_switch_engaged or marker is not None:
                drain = self.agents.drain(conn, state.kill_switch_at or getattr(marker, "at", None), now)
        doc: dict[str, Any] = {
            "currentPhase": state.current_phase,
            "phaseStartDate": isoformat(state.phase_started_at),
            "commandWhitelist": list(state.command_whitelist or []),
            "pausedCommandTypes": list(state.paused_command_types or []),
            "killSwitch": kill_switch_json(state, marker),
            "breakerMode": state.breaker_mode,
            "mode": state.mode or "normal",
            "unresolvedEvents": unresolved,
            "grantsInFlight": grants_in_flight,
            "pendingRequests": pending_requests,
            "halfOpen": half_open,
            "readinessScore": None,
            "validationPeriod": None,
            "leader": None,
        }
        if state.validation_until is not None and state.validation_until > now:
            left = state.validation_until - now
            doc["validationPeriod"] = {"until": isoformat(state.validation_until),
                                       "daysLeft": left.days + (1 if left.seconds else 0),
                                       "proposalId": state.validation_proposal_id}
        if drain is not None:
            doc["drain"] = drain
        if lease is not None:
            doc["leader"] = {"holder": lease.holder, "expiresAt": isoformat(lease.expires_at),
                             "alive": lease.expires_at > now}
        if with_readiness:
            doc["readinessScore"] = round(self.readiness.assess().score, 4)
        return doc

    def kill_switch_status(self) -> dict[str, Any]:
        """``killSwitch`` as `status` has it; from the marker file alone (``storeReadable`` false) when the
        store cannot be read."""
        marker = self.kill_marker.engaged()
        try:
            with self.store.read(lane="safety") as conn:
                state = state_repo.get_state(conn)
        except StoreUnavailable:
            return {**kill_switch_json(None, marker), "storeReadable": False}
        return kill_switch_json(state, marker)

    def require(self, actor: str, action: str) -> set[str]:
        """Refuse (PermissionDenied) unless the actor holds a role the action needs."""
        with self.store.read() as conn:
            return access.require_role(conn, actor, action)

    def roles_of(self, operator: str) -> set[str]:
        with self.store.read() as conn:
            return identity_repo.roles_of(conn, operator)

    def role_grants(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return [{"operator": g.operator, "role": g.role, "grantedBy": g.granted_by,
                     "grantedAt": isoformat(g.granted_at)} for g in identity_repo.all_grants(conn)]

    def breaker_events(self, *, unresolved_only: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return [event_json(r) for r in breaker_repo.list_events(conn, unresolved_only=unresolved_only,
                                                                     limit=limit)]

    def trend_report(self, hours: int = 24) -> dict[str, Any]:
        """EMA, slope and z-score per key rate over the stored snapshots, and predicted breaker crossings."""
        now = self.clock.now()
        with self.store.read() as conn:
            snaps = readiness_repo.snapshots(conn, now - timedelta(hours=hours))
            rules = breaker_repo.list_rules(conn, enabled_only=True)
        trends = [trend(m, rate_series(snaps, m)).to_json() for m in ("successRate", "errorRate", "rollbackRate")]
        return {"trends": trends, "predictions": [p.to_json() for p in predictions(snaps, rules, now)]}

    # --- roles --------------------------------------------------------------------------------

    def grant_role(self, actor: str, operator: str, role: str) -> bool:
        with self.store.write() as conn:
            return access.grant(conn, actor=actor, operator=operator, role=role, at=self.clock.now())

    def revoke_role(self, actor: str, operator: str, role: str) -> bool:
        with self.store.write() as conn:
            return access.revoke(conn, actor=actor, operator=operator, role=role, at=self.clock.now())

    # --- attestations -------------------------------------------------------------------------

    def attest(self, actor: str, item_name: str, *, passed: bool, evidence: str,
               valid_for: timedelta | None = None) -> dict[str, Any]:
        item = find_item(item_name)
        if item is None:
            raise NotFound(f"no checklist item {item_name!r}; see `govcon readiness` for the names and slugs")
        if item.decided_by == "data":
            raise InvalidInput(f"{item.name!r} is decided from the store's data and cannot be attested")
        if not evidence or not evidence.strip():
            raise InvalidInput("--evidence must say what the attestation rests on (a link, a document)")
        now = self.clock.now()
        valid_for = valid_for or self.readiness.policy.attestation_valid_for
        if valid_for <= timedelta(0):
            raise InvalidInput("an attestation must be valid for a positive time")
        expires = now + valid_for
        with self.store.write() as conn:
            access.require_role(conn, actor, "attest")
            readiness_repo.add_attestation(conn, item_slug=item.slug, passed=passed, evidence=evidence.strip(),
                                           operator=actor, at=now, expires_at=expires)
            audit.append(conn, at=now, actor=actor, action="readiness.attest", target=item.slug,
                         reason=evidence.strip(),
                         details={"item": item.name, "passed": passed, "expiresAt": isoformat(expires)})
        return {"item": item.name, "slug": item.slug, "passed": passed, "operator": actor,
                "evidence": evidence.strip(), "at": isoformat(now), "expiresAt": isoformat(expires)}

    # --- audit --------------------------------------------------------------------------------

    def audit_entries(self, *, limit: int = 100, search: str | None = None) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = audit_repo.list_entries(conn, limit=limit, search=search)
        return [{"seq": r.seq, "at": isoformat(r.at), "actor": r.actor, "action": r.action,
                 "target": r.target, "reason": r.reason, "details": r.details, "hash": r.hash}
                for r in rows]

    def audit_verify(self) -> tuple[int, audit.AuditProblem | None]:
        with self.store.read() as conn:
            return audit.verify(conn)

    def audit_verify_report(self, expect_head: str | None = None, *,
                            key: Any = True) -> tuple[VerifyReport, bool]:
        """`audit verify` as the CLI, the service and the console's `v` run it: the chain (and an expected
        head), then the state, roles, tokens, rules, policies and sinks against what the log says they
        are (engine/audit_verify.py); and whether the store has an audit key registered."""
        report = verify(self.store, expect_head=expect_head, key=key)
        with self.store.read() as conn:
            keyed = audit.key_for(conn) is not None
        return report, keyed

    # --- maintenance --------------------------------------------------------------------------

    def prune(self, actor: str, older_than: timedelta, *, system: bool = False) -> dict[str, int]:
        if older_than < timedelta(days=1):
            raise InvalidInput("--older-than must be at least 1d")
        now = self.clock.now()
        if not system:
            self.require(actor, "rules.edit")
        # short batches, each its own transaction (storage/maintenance.py): an engage never waits long
        removed: dict[str, int] = {}
        details: dict[str, Any] = {"olderThanDays": older_than.days, "removed": removed}
        partitions: dict[str, Any] = {}  # PostgreSQL: the months of command_events made and dropped
        if self.store.dialect == "postgresql":
            details["partitions"] = partitions
        try:
            maintenance.prune_in_batches(self.store.write, self.store.dialect, now - older_than, removed=removed,
                                         events_write=lambda: self.store.write(serialise=False), now=now,
                                         partitions=partitions)
            freed = maintenance.incremental_vacuum(self.store.write, self.store.dialect)
            if freed is not None:  # a SQLite store with auto_vacuum=INCREMENTAL
                details["pagesFreed"] = freed
        except Exception as exc:
            details["interrupted"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            raise
        finally:
            with self.store.write() as conn:
                audit.append(conn, at=now, actor=actor, action="db.prune", target="store", details=details)
        return removed

    def backup(self, target: Path, *, compress: bool = False) -> int:
        return maintenance.backup_sqlite(self.store.engine, target, compress=compress)

