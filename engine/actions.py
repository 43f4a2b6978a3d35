"""Governed actions (DESIGN.md v2): the grants the gate issues, the action requests humans decide, the
outcomes agents report against their grants, and the gate's decision log.

Lifecycle of a grant: issued by an ``allow`` (or by a human approving a request) with ``expiresAt`` =
now + the policy's grant_ttl -> closed by the agent's outcome, a command event whose ``id`` is the
``grantId`` (succeeded, failed, rolled_back; succeeded or failed may later become rolled_back, nothing
else changes a first outcome) -> or, with no outcome by ``expiresAt``, ``expired``: an unknown outcome,
alerted (medium) naming the agent. Budgets count every grant issued, whatever became of it.

Every grant, approval, rejection and expiry is an audit entry in the transaction that makes it.
"""

from __future__ import annotations

import builtins
import collections
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection, Row

from engine import recovery
from engine.alerts import Alert
from engine.clock import Clock, aware_utc, isoformat
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.gate import ALLOW, Ask, GateDecision
from engine.redact import redact_obj
from storage import actions_repo, audit, identity_repo, state_repo
from storage.store import Store

if TYPE_CHECKING:
    from engine.kill_marker import KillMarker
    from engine.policies import PolicyEngine

log = logging.getLogger("govcon.actions")

GRANT_PREFIX = "gr-"
REQUEST_PREFIX = "req-"
EXECUTED = ("succeeded", "failed", "rolled_back")
#: a grant given back by the governed runner because nothing ran
RELEASED = "released"
#: which later outcome may follow a first one (a command that ran and was then rolled back)
_LATER = {"succeeded": {"rolled_back"}, "failed": {"rolled_back"}, "rolled_back": set()}
#: the grant statuses an outcome may replace: an open or expired grant, or a first outcome it may follow
_BEFORE = {new: (actions_repo.OPEN, "expired", *sorted(first for first, later in _LATER.items() if new in later))
           for new in EXECUTED}
#: how far before its grant an outcome may be stamped (the agents' clocks against the store's; as far as an
#: event may be stamped ahead, engine/events.py EventLimits.max_clock_skew)
OUTCOME_SKEW = timedelta(minutes=5)
#: how loudly an action request is announced (DESIGN.md: info log, alert chat, approval_required pages)
REQUEST_SEVERITY = {"info": "low", "alert": "high", "approval_required": "critical"}
AGENT_UNKNOWN = "unknown"


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def grant_json(row: Row[Any], *, with_report: bool = False) -> dict[str, Any]:
    doc = {"grantId": row.id, "commandType": row.command_type, "service": row.service, "agent": row.agent,
           "confidence": row.confidence, "actionClass": row.action_class, "policy": row.policy,
           "grantedAt": isoformat(row.granted_at), "expiresAt": isoformat(row.expires_at), "status": row.status,
           "outcomeAt": isoformat(row.outcome_at), "requestId": row.request_id, "approvedBy": row.approved_by,
           "requestedBy": row.requested_by}
    if with_report:
        doc["report"] = row.report
    return doc


def request_json(row: Row[Any]) -> dict[str, Any]:
    return {"requestId": row.id, "commandType": row.command_type, "service": row.service, "agent": row.agent,
            "confidence": row.confidence, "actionClass": row.action_class, "policy": row.policy,
            "reason": row.reason, "notificationLevel": row.notification_level,
            "approverRoles": list(row.approver_roles or []), "requestedBy": row.requested_by,
            "requestedAt": isoformat(row.requested_at), "expiresAt": isoformat(row.expires_at),
            "status": row.status, "decidedBy": row.decided_by, "decidedAt": isoformat(row.decided_at),
            "note": row.note, "grantId": row.grant_id}


def decision_json(row: Row[Any]) -> dict[str, Any]:
    return {"at": isoformat(row.at), "commandType": row.command_type, "service": row.service, "agent": row.agent,
            "confidence": row.confidence, "actionClass": row.action_class, "decision": row.decision,
            "reason": row.reason, "policy": row.policy, "grantId": row.grant_id, "requestId": row.request_id}


def _decision_row(ask: Ask, decision: GateDecision, at: datetime) -> dict[str, Any]:
    def fit(v: Any, n: int = 200) -> Any:  # refused inputs are logged too, cut to the columns' widths
        return v[:n] if isinstance(v, str) else None
    conf = ask.confidence if isinstance(ask.confidence, (int, float)) and not isinstance(ask.confidence, bool) \
        and 0 <= ask.confidence <= 1 else None
    return {"at": at, "command_type": fit(ask.command_type) or "", "service": fit(ask.service),
            "agent": fit(ask.agent), "confidence": conf, "action_class": fit(ask.action_class),
            "decision": decision.decision, "reason": decision.reason[:2000],
            "policy": decision.extra.get("policy"), "grant_id": decision.grant_id,
            "request_id": decision.request_id}


AlertSink = Callable[[Connection, Alert, bool], Any]


#: how long the decision log gathers decisions before it writes them (``DecisionLogWriter``)
BATCH_WAIT = 0.05
#: the longest one ``ActionBook.wait`` blocks: through the service each call holds one of its threads, and any
#: role may wait (a caller wanting longer calls again: ``wait_for_decision``)
WAIT_SLICE_S = 60.0


def wait_for_decision(wait: Callable[[str, float], dict[str, Any]], request_id: str, timeout: float) -> dict[str, Any]:
    """``wait`` (an ActionBook's, or a client's of the service) called again until the request is decided or
    expired, or ``timeout`` seconds pass; returns the last ``show``."""
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        doc = wait(request_id, max(0.0, min(deadline - time.monotonic(), WAIT_SLICE_S)))
        request = doc.get("request")
        if request is None or request.get("status") != "pending" or time.monotonic() >= deadline:
            return doc


class DecisionLogWriter:
    """Writes the decisions that take no grant (deny, needs_approval) off the caller's path: a gate
    answer never waits for a writer. Batched by a daemon thread; ``flush`` waits for what is queued.

    A put appends to a deque and wakes the writer only when it sleeps with nothing queued; the writer then
    gathers for BATCH_WAIT without being woken by each put, and writes the batch in one transaction: a storm
    of refusals costs a few commits a second, and no thread switch per decision."""

    def __init__(self, store: Store, *, max_queue: int = 100_000) -> None:
        self.store = store
        self.max_queue = max_queue
        self._rows: collections.deque[dict[str, Any]] = collections.deque()
        self._pending = 0  # put and not yet written (or dropped); under _lock
        self._lock = threading.Lock()
        self._wake = threading.Event()  # something was queued while the writer slept
        self._hurry = threading.Event()  # flush: write now, do not gather
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def put(self, row: dict[str, Any]) -> None:
        with self._lock:
            if self._pending >= self.max_queue:
                self.dropped += 1
                return
            self._pending += 1
            self._rows.append(row)
        if not self._wake.is_set():
            self._wake.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="govcon-decision-log", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._hurry.wait(BATCH_WAIT)  # gather (a flush cuts it short)
            self._hurry.clear()
            while self._rows:
                rows: list[dict[str, Any]] = []
                while self._rows and len(rows) < 1000:
                    rows.append(self._rows.popleft())
                try:
                    with self.store.write(serialise=False) as conn:
                        actions_repo.insert_decisions(conn, rows)
                except Exception as exc:  # the log is evidence, not a safety path: say so, never block the gate
                    self.dropped += len(rows)
                    log.warning("gate decision log: %d decisions not recorded: %s", len(rows), exc)
                finally:
                    with self._lock:
                        self._pending -= len(rows)

    def flush(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._pending:
            self._hurry.set()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


@dataclass(frozen=True)
class OutcomeProblem:
    field: str
    message: str


class ActionBook:
    def __init__(self, store: Store, clock: Clock, *, policies: PolicyEngine,
                 enqueue_alert: AlertSink | None = None, kill_marker: KillMarker | None = None) -> None:
        self.store = store
        self.clock = clock
        self.policies = policies
        self.enqueue_alert = enqueue_alert
        self.kill_marker = kill_marker
        self.decision_log = DecisionLogWriter(store)

    def _alert(self, conn: Connection, alert: Alert) -> None:
        if self.enqueue_alert is not None:
            state = state_repo.get_state(conn)
            self.enqueue_alert(conn, alert, bool(state is not None and state.kill_switch_engaged))

    # --- the gate's side (inside its write transaction) ------------------------------------------

    def issue_grant(self, conn: Connection, ask: Ask, decision: GateDecision, now: datetime, *,
                    requested_by: str | None, request_id: str | None = None,
                    approved_by: str | None = None, head: Any = None) -> GateDecision:
        """Store the grant, its decision row and its audit entry (``head``: the gate's snapshot row, read in
        this transaction with the audit chain's newest entry; saves the append its read)."""
        grant_id = new_id(GRANT_PREFIX)
        expires = now + self.policies.grant_ttl(ask, conn)
        agent = ask.agent or requested_by or AGENT_UNKNOWN
        decision = decision.with_extra(grantId=grant_id, expiresAt=isoformat(expires), agent=agent)
        if decision.extra.get("probe"):  # a half-open type's probe (engine/recovery.py)
            recovery.bind(conn, ask.command_type, grant_id)
        entry = audit.next_entry(
            conn, at=now, actor=approved_by or "gate", action="action.grant", target=grant_id,
            reason=decision.reason, head=head,
            details={"commandType": ask.command_type, "service": ask.service, "agent": agent,
                     "confidence": ask.confidence, "requestedBy": requested_by, "requestId": request_id,
                     "expiresAt": isoformat(expires), "policy": decision.extra.get("policy")})
        grant = {"id": grant_id, "command_type": ask.command_type, "service": ask.service, "agent": agent,
                 "confidence": ask.confidence, "action_class": ask.action_class,
                 "policy": decision.extra.get("policy"), "granted_at": now, "expires_at": expires,
                 "status": actions_repo.OPEN, "request_id": request_id, "approved_by": approved_by,
                 "requested_by": requested_by}
        # the grant, its decision row, its audit entry and the audit head: one statement on PostgreSQL
        actions_repo.write_grant(conn, grant, _decision_row(ask, decision, now), entry)
        return decision

    def open_request(self, conn: Connection, ask: Ask, decision: GateDecision, now: datetime, *,
                     requested_by: str | None) -> GateDecision:
        ttl, level, roles = self.policies.request_terms(ask, conn)
        request_id = new_id(REQUEST_PREFIX)
        agent = ask.agent or requested_by or AGENT_UNKNOWN
        expires = now + ttl
        actions_repo.insert_request(conn, id=request_id, command_type=ask.command_type, service=ask.service,
                                    agent=agent, confidence=ask.confidence, action_class=ask.action_class,
                                    policy=decision.extra.get("policy"), reason=decision.reason,
                                    notification_level=level, approver_roles=list(roles),
                                    requested_by=requested_by or agent, requested_at=now, expires_at=expires,
                                    status="pending")
        decision = decision.with_extra(requestId=request_id, requestExpiresAt=isoformat(expires), agent=agent,
                                       notificationLevel=level)
        actions_repo.insert_decisions(conn, [_decision_row(ask, decision, now)])
        audit.append(conn, at=now, actor=requested_by or agent, action="action.request", target=request_id,
                     reason=decision.reason,
                     details={"commandType": ask.command_type, "service": ask.service, "agent": agent,
                              "confidence": ask.confidence, "expiresAt": isoformat(expires),
                              "notificationLevel": level})
        on = f" on {ask.service}" if ask.service else ""
        self._alert(conn, Alert(
            kind="trigger", severity=REQUEST_SEVERITY[level],
            title=f"Approval requested: {ask.command_type}{on} by {agent} ({request_id})",
            body=f"{decision.reason}. Approve: govcon actions approve {request_id} — or reject: "
                 f"govcon actions reject {request_id} --reason TEXT (expires {isoformat(expires)})",
            dedup_key=f"govcon-action-{request_id}", at=now,
            details={"requestId": request_id, "commandType": ask.command_type, "agent": agent}))
        return decision

    def log_decision(self, conn: Connection, ask: Ask, decision: GateDecision, now: datetime) -> None:
        actions_repo.insert_decisions(conn, [_decision_row(ask, decision, now)])

    def log_decision_later(self, ask: Ask, decision: GateDecision, now: datetime) -> None:
        self.decision_log.put(_decision_row(ask, decision, now))

    # --- humans decide requests ---------------------------------------------------------------

    def approve(self, actor: str, request_id: str, note: str | None = None) -> dict[str, Any]:
        now = self.clock.now()
        marker = self.kill_marker.engaged() if self.kill_marker is not None else None
        if marker is not None:
            raise Conflict(f"the kill switch is engaged (marker file): no action may be approved until it is "
                           f"released; {request_id} stays pending")
        expired = False
        with self.store.write() as conn:
            row = self._pending(conn, request_id, now, actor, "approve")
            if row is None:
                expired = True
            else:
                self._require_approver(conn, actor, row)
                state = state_repo.get_state(conn)
                if state is None:  # no governance state (a store `govcon db init` never ran on): refuse, as engaged
                    raise Conflict("the store has no governance state: no action may be approved "
                                   "(govcon db init)")
                if state.kill_switch_engaged:
                    raise Conflict(f"the kill switch is engaged (by {state.kill_switch_by}: "
                                   f"{state.kill_switch_reason}): no action may be approved until it is released")
                if (getattr(state, "mode", None) or "normal") == "read_only":
                    raise Conflict("mode read_only: no action may be approved; set the mode back first "
                                   "(govcon mode set normal --reason …)")
                ask = Ask(row.command_type, row.confidence, row.action_class, row.service, row.agent)
                decision = GateDecision(ALLOW, f"approved by {actor}" + (f": {note.strip()}" if note and note.strip()
                                                                         else ""),
                                        row.command_type, state.current_phase,
                                        {"policy": row.policy, "requestId": row.id})
                decision = self.issue_grant(conn, ask, decision, now, requested_by=row.requested_by,
                                            request_id=row.id, approved_by=actor)
                actions_repo.update_request(conn, row.id, status="approved", decided_by=actor, decided_at=now,
                                            note=(note or "").strip() or None, grant_id=decision.grant_id)
                audit.append(conn, at=now, actor=actor, action="action.approve", target=row.id,
                             reason=(note or "").strip(), details={"grantId": decision.grant_id,
                                                                   "commandType": row.command_type,
                                                                   "agent": row.agent})
                self._resolve_alert(conn, row, now, f"approved by {actor}")
        if expired:
            raise Conflict(f"action request {request_id} expired before it was decided; the agent must ask again")
        return self.show(request_id)

    def reject(self, actor: str, request_id: str, reason: str | None) -> dict[str, Any]:
        if not reason or not reason.strip():
            raise InvalidInput("rejecting an action request needs --reason saying why (the agent and the audit log "
                               "see it)")
        now = self.clock.now()
        expired = False
        with self.store.write() as conn:
            row = self._pending(conn, request_id, now, actor, "reject")
            if row is None:
                expired = True
            else:
                self._require_approver(conn, actor, row, check_four_eyes=False)
                actions_repo.update_request(conn, row.id, status="rejected", decided_by=actor, decided_at=now,
                                            note=reason.strip())
                audit.append(conn, at=now, actor=actor, action="action.reject", target=row.id, reason=reason.strip(),
                             details={"commandType": row.command_type, "agent": row.agent})
                self._resolve_alert(conn, row, now, f"rejected by {actor}")
        if expired:
            raise Conflict(f"action request {request_id} expired before it was decided (it counts as rejected)")
        return self.show(request_id)

    def _pending(self, conn: Connection, request_id: str, now: datetime, actor: str, verb: str) -> Row[Any] | None:
        """The pending request; None when it has just expired (recorded as such); else refuses."""
        row = actions_repo.get_request(conn, request_id)
        if row is None:
            raise NotFound(f"no action request {request_id!r}; see `govcon actions list --pending`")
        if row.status != "pending":
            raise Conflict(f"action request {request_id} was {row.status} already by {row.decided_by or 'expiry'} "
                           f"at {isoformat(row.decided_at)}; it cannot be {verb}d now")
        if row.expires_at <= now:
            self._expire_request(conn, row, now)
            return None
        return row

    def _require_approver(self, conn: Connection, actor: str, row: Row[Any], *, check_four_eyes: bool = True) -> None:
        roles = tuple(row.approver_roles or ()) or ("on-call", "incident-commander", "ops-lead")
        held = identity_repo.roles_of(conn, actor)
        if not held.intersection(roles):
            raise PermissionDenied(f"deciding an action request for {row.command_type} needs one of the roles "
                                   f"{', '.join(roles)}; {actor} holds {', '.join(sorted(held)) or 'no role'}. "
                                   f"An admin can grant it: govcon roles grant {actor} {roles[0]}")
        if check_four_eyes and actor == row.requested_by:
            state = state_repo.get_state(conn)
            if not (state is not None and state.four_eyes_relaxed):
                raise PermissionDenied(f"{actor} asked for this action and cannot approve it too: "
                                       "another approver must")

    def _resolve_alert(self, conn: Connection, row: Row[Any], now: datetime, what: str) -> None:
        self._alert(conn, Alert(kind="resolve", severity=REQUEST_SEVERITY.get(row.notification_level, "low"),
                                title=f"Action request {row.id} {what}",
                                body=f"{row.command_type} by {row.agent}: {what}",
                                dedup_key=f"govcon-action-{row.id}", at=now, details={"requestId": row.id}))

    # --- reading ------------------------------------------------------------------------------

    def list(self, *, pending: bool = False, in_flight: bool = False, limit: int = 100) -> dict[str, Any]:
        now = self.clock.now()
        with self.store.read() as conn:
            requests = [] if in_flight else actions_repo.list_requests(
                conn, status="pending" if pending else None, limit=limit)
            grants = [] if pending else actions_repo.list_grants(conn, in_flight_at=now if in_flight else None,
                                                                 limit=limit)
        reqs = [request_json(r) for r in requests]
        for r in reqs:  # a request past its expiry that the job has not reached yet is expired all the same
            if r["status"] == "pending" and r["expiresAt"] <= isoformat(now):
                r["status"] = "expired"
        if pending:
            reqs = [r for r in reqs if r["status"] == "pending"]
        return {"requests": reqs, "grants": [grant_json(g) for g in grants]}

    def show(self, action_id: str) -> dict[str, Any]:
        """A request (with its grant) or a grant (with its request and report)."""
        with self.store.read() as conn:
            if action_id.startswith(REQUEST_PREFIX):
                req = actions_repo.get_request(conn, action_id)
                if req is None:
                    raise NotFound(f"no action request {action_id!r}; see `govcon actions list`")
                grant = actions_repo.get_grant(conn, req.grant_id) if req.grant_id else None
            else:
                grant = actions_repo.get_grant(conn, action_id)
                if grant is None:
                    raise NotFound(f"no grant or action request {action_id!r}; see `govcon actions list`")
                req = actions_repo.get_request(conn, grant.request_id) if grant.request_id else None
        doc: dict[str, Any] = {"request": request_json(req) if req else None,
                               "grant": grant_json(grant, with_report=True) if grant else None}
        if req is not None and req.status == "pending" and req.expires_at <= self.clock.now():
            doc["request"]["status"] = "expired"
        doc["status"] = (doc["grant"] or {}).get("status") or doc["request"]["status"]
        return doc

    def wait(self, request_id: str, timeout: float, *, poll: float = 0.25,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
        """Poll until the request is decided or expires, or ``timeout`` seconds pass (at most WAIT_SLICE_S: a
        caller wanting longer calls again, ``wait_for_decision``); returns ``show``."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
                or timeout < 0:
            raise InvalidInput(f"a wait of {timeout!r} seconds: give a number from 0 up")
        deadline = time.monotonic() + min(timeout, WAIT_SLICE_S)
        while True:
            doc = self.show(request_id)
            if doc["request"] is None or doc["request"]["status"] != "pending" or time.monotonic() >= deadline:
                return doc
            sleep(min(poll, max(deadline - time.monotonic(), 0.0)))

    def decisions(self, *, since: datetime | None = None, limit: int = 100) -> dict[str, Any]:
        self.decision_log.flush(timeout=1.0)
        since = since or self.clock.now() - timedelta(days=1)
        with self.store.read() as conn:
            rows = actions_repo.list_decisions(conn, since=since, limit=limit)
            orphans = actions_repo.outcomes_naming_no_grant(conn, since, prefix=GRANT_PREFIX, limit=limit)
        return {"decisions": [decision_json(r) for r in rows],
                "outcomesWithoutGrant": [{"id": o.command_id, "commandType": o.command_type, "status": o.status,
                                          "at": isoformat(o.at)} for o in orphans]}

    def summary(self, conn: Connection, now: datetime) -> dict[str, int]:
        return {"grantsInFlight": actions_repo.in_flight(conn, None, now),
                "pendingRequests": actions_repo.count_pending_requests(conn, now)}

    # --- outcomes, from ingest (the Ingestor's command hook) -----------------------------------

    def screen(self, conn: Connection, rows: builtins.list[tuple[int, dict[str, Any]]]) -> dict[int, tuple[str, str]]:
        """Refuse outcome events that contradict their grant: another type, or a second outcome that
        cannot follow the first (the first stands). The grants are read under the command-events lock (on
        PostgreSQL, where ingest takes no store-wide lock): a concurrent ingest's outcome for the same grant
        is either committed before this read or screened after this transaction. Rows naming no grant pay
        nothing."""
        ids = [r["command_id"] for _, r in rows if r["command_id"].startswith(GRANT_PREFIX)]
        grants = actions_repo.outcome_grants(conn, ids)
        if not grants:
            return {}
        status = {gid: g.status for gid, g in grants.items()}
        problems: dict[int, tuple[str, str]] = {}
        for line, row in rows:
            grant = grants.get(row["command_id"])
            if grant is None:
                continue
            if row["command_type"] != grant.command_type:
                problems[line] = ("type", f"grant {grant.id} was issued for {grant.command_type}, "
                                          f"not {row['command_type']}")
                continue
            granted = aware_utc(grant.granted_at)
            if row["status"] in EXECUTED and aware_utc(row["at"]) < granted - OUTCOME_SKEW:
                # an action cannot end before it was allowed; a stamp that old is also one backfill leaves out
                # of detection, so a failure reported that way would never reach a breaker
                problems[line] = ("at", f"the outcome of grant {grant.id} is dated {isoformat(row['at'])}, before "
                                        f"the grant was issued ({isoformat(granted)}); stamp it when the action "
                                        "ended")
                continue
            new = row["status"]
            if new not in EXECUTED:
                continue
            current = status[grant.id]
            if current in (actions_repo.OPEN, "expired") or new == current or new in _LATER.get(current, ()):
                status[grant.id] = new if new != current else current
                continue
            problems[line] = ("status", f"grant {grant.id} already has the outcome {current}; the first outcome "
                                        f"stands, {new} is refused")
        return problems

    def stored(self, conn: Connection, rows: builtins.list[dict[str, Any]]) -> None:
        """Close the grants these outcome events name (inside the ingest transaction)."""
        outcomes = [r for r in rows if r["status"] in EXECUTED and r["command_id"].startswith(GRANT_PREFIX)]
        if not outcomes:
            return
        # half-open probes among these grants count down or pause again
        recovery.outcomes(conn, outcomes, self.clock.now(), self._alert)
        grants = actions_repo.grants_by_id(conn, [r["command_id"] for r in outcomes])
        undone = [grants[r["command_id"]] for r in outcomes if r["status"] == "rolled_back"
                  and r["command_id"] in grants and grants[r["command_id"]].status == "succeeded"]
        if undone:  # a probe that counted as a success and is rolled back now: a failed probe after all
            recovery.rolled_back_after_success(conn, undone, self.clock.now(), self._alert)
        for row in sorted(outcomes, key=lambda r: EXECUTED.index(r["status"]) if r["status"] != "rolled_back" else 9):
            grant = grants.get(row["command_id"])
            if grant is None or grant.status == row["status"] or grant.command_type != row["command_type"]:
                continue
            if grant.status not in (actions_repo.OPEN, "expired") and row["status"] not in _LATER.get(grant.status, ()):
                continue
            # only from a status this outcome may follow: a release (or expiry) committed since the read is checked
            # again by the UPDATE itself (expired may still take it; released stays)
            actions_repo.update_grant(conn, grant.id, only_from=_BEFORE[row["status"]], status=row["status"],
                                      outcome_at=row["at"])
            updated = actions_repo.get_grant(conn, grant.id)
            if updated is None:  # (updated in this transaction, so it is there) later outcomes for it are skipped
                grants.pop(grant.id, None)
            else:
                grants[grant.id] = updated

    # --- expiry (the scheduler's job) --------------------------------------------------------

    def expire_due(self) -> dict[str, int]:
        """Grants past expiresAt without an outcome become expired (alerted, naming the agent); pending
        requests past theirs become expired (they count as rejected)."""
        now = self.clock.now()
        with self.store.read() as conn:
            if not actions_repo.due_grants(conn, now, limit=1) and not actions_repo.due_requests(conn, now, limit=1):
                return {"grants": 0, "requests": 0}
        with self.store.write() as conn:
            # only grants still open when the UPDATE runs: an outcome stored since the read (ingest takes no
            # store-wide lock on PostgreSQL; the UPDATE waits for its row lock, then sees its status) stands
            grants = [g for g in actions_repo.due_grants(conn, now)
                      if actions_repo.update_grant(conn, g.id, only_from=(actions_repo.OPEN,), status="expired")]
            for g in grants:
                audit.append(conn, at=now, actor="scheduler", action="action.expire", target=g.id,
                             reason="no outcome reported before the grant expired",
                             details={"commandType": g.command_type, "agent": g.agent, "service": g.service,
                                      "expiresAt": isoformat(g.expires_at)})
                on = f" on {g.service}" if g.service else ""
                self._alert(conn, Alert(
                    kind="info", severity="medium",
                    title=f"Grant expired without an outcome: {g.command_type}{on} by {g.agent}",
                    body=f"{g.agent} was granted {g.command_type}{on} at {isoformat(g.granted_at)} ({g.id}) and "
                         f"reported no outcome by {isoformat(g.expires_at)}: the outcome is unknown. "
                         "Check what the agent did.",
                    dedup_key=f"govcon-grant-expired-{g.id}", at=now,
                    details={"grantId": g.id, "agent": g.agent, "commandType": g.command_type}))
            if grants:  # an expired probe of a half-open type counts as a failed one
                recovery.expired(conn, grants, now, self._alert)
            requests = actions_repo.due_requests(conn, now)
            for r in requests:
                self._expire_request(conn, r, now)
        return {"grants": len(grants), "requests": len(requests)}

    def _expire_request(self, conn: Connection, row: Row[Any], now: datetime) -> None:
        actions_repo.update_request(conn, row.id, status="expired", decided_at=now)
        audit.append(conn, at=now, actor="scheduler", action="action.expire", target=row.id,
                     reason="nobody decided the action request before it expired (it counts as rejected)",
                     details={"commandType": row.command_type, "agent": row.agent})
        self._resolve_alert(conn, row, now, "expired undecided")

    # --- the governed runner's side ---------------------------------------------------------
    #
    # `govcon run`'s port (engine/runner.py GovernancePort) acts for whoever called it: in-process, and through
    # the govcon service for any caller the socket or POST /api/rpc admits (the agent role included, which
    # may only ingest, ask the gate and beat its lease). Its grant-scoped calls therefore act only on a grant
    # that exists and that the caller holds (``holds``): another caller's report, outcome or escalation
    # would be forged evidence, and a release cancels a granted (maybe human-approved) action. A human who
    # could have decided the grant's action request may still release it (``_releasers``): a cancellation,
    # audited in that human's name; nobody but the holder writes a grant's report, outcome or escalation.

    def require_holder(self, actor: str, grant_id: str, verb: str) -> None:
        """Refuse (NotFound, PermissionDenied) unless grant ``grant_id`` exists and ``actor`` holds it; ``verb``
        says in the refusal what was refused (e.g. "report the outcome of")."""
        with self.store.read() as conn:
            self._held(conn, actor, grant_id, verb)

    def _held(self, conn: Connection, actor: str, grant_id: str, verb: str, *,
              humans_may: bool = False) -> Row[Any]:
        """The grant, if ``actor`` holds it (or, ``humans_may``, holds a role that could have decided its
        action request); else NotFound or PermissionDenied naming the grant and who holds it."""
        grant = actions_repo.get_grant(conn, grant_id)
        if grant is None:
            raise NotFound(f"no grant {grant_id!r}; see `govcon actions list`")
        if holds(grant, actor):
            return grant
        roles: tuple[str, ...] = ()
        if humans_may:
            roles = self._releasers(conn, grant)
            if identity_repo.roles_of(conn, actor).intersection(roles):
                return grant
        others = f" or one of the roles {', '.join(roles)}" if roles else ""
        raise PermissionDenied(f"grant {grant.id} is held by {holder_text(grant)}; {actor} cannot {verb} it: only "
                               f"its holder (the operator who asked for it, or its agent){others} may")

    def _releasers(self, conn: Connection, grant: Row[Any]) -> tuple[str, ...]:
        """Who may release a grant they do not hold: the roles that could decide its action request (the
        request's own, for a grant a human approved; else its policy's, as the gate would ask them)."""
        request = actions_repo.get_request(conn, grant.request_id) if grant.request_id else None
        if request is not None and request.approver_roles:
            return tuple(request.approver_roles)
        ask = Ask(grant.command_type, grant.confidence, grant.action_class, grant.service, grant.agent)
        return tuple(self.policies.request_terms(ask, conn)[2])

    def release(self, actor: str, grant_id: str, reason: str, *, holder_only: bool = False) -> bool:
        """Nothing ran (a check or the backup failed, the kill switch stopped it first): the grant is given
        back, audited. It still counts against the day's budget; it is no longer in flight, and no outcome
        may follow it. Returns whether it was open.

        ``holder_only`` (the governed runner's port, acting for its caller): the grant must exist (NotFound)
        and ``actor`` must hold it, or hold a role that could decide its action request (PermissionDenied)."""
        now = self.clock.now()
        with self.store.write() as conn:
            grant = (self._held(conn, actor, grant_id, "release", humans_may=True) if holder_only
                     else actions_repo.get_grant(conn, grant_id))
            if grant is None or grant.status != actions_repo.OPEN:
                return False
            # still open when the UPDATE runs: an outcome ingested meanwhile (no store-wide lock) stands
            if not actions_repo.update_grant(conn, grant_id, only_from=(actions_repo.OPEN,), status=RELEASED,
                                             outcome_at=now):
                return False
            audit.append(conn, at=now, actor=actor, action="action.release", target=grant_id, reason=reason,
                         details={"commandType": grant.command_type, "service": grant.service, "agent": grant.agent})
        return True

    def escalate(self, actor: str, grant_id: str, title: str, body: str, details: dict[str, Any]) -> None:
        """The runner's rollback failed: a critical alert through the outbox, in one transaction with its audit
        entry. Only for a grant that exists and that ``actor`` holds (NotFound, PermissionDenied: nothing is
        written, nobody is paged)."""
        now = self.clock.now()
        with self.store.write() as conn:
            self._held(conn, actor, grant_id, "escalate")
            audit.append(conn, at=now, actor=actor, action="action.escalate", target=grant_id, reason=title,
                         details=details)
            self._alert(conn, Alert(kind="trigger", severity="critical", title=title, body=body,
                                    dedup_key=f"govcon-rollback-failed-{grant_id}", at=now, details=details))

    # --- reports from the governed runner ----------------------------------------------------

    def attach_report(self, actor: str, grant_id: str, report: dict[str, Any]) -> None:
        """The runner's action report on its grant: only ``actor``'s own (NotFound, PermissionDenied)."""
        now = self.clock.now()
        with self.store.write() as conn:
            self._held(conn, actor, grant_id, "attach a report to")
            actions_repo.update_grant(conn, grant_id, report=redact_obj(report))
            audit.append(conn, at=now, actor=actor, action="action.report", target=grant_id,
                         reason=str(report.get("outcome", "")),
                         details={"outcome": report.get("outcome"), "exitCode": report.get("exitCode")})


def holds(grant: Row[Any], actor: str) -> bool:
    """Whether ``actor`` holds the grant: it asked for it (the gate's asker, also for a grant a human approved
    on its request; `govcon run` asks as its caller, embedded and in client mode), or it is the agent the grant
    was issued to (a grant asked for without a name is the unknown agent's, which nobody is)."""
    return actor == grant.requested_by or (grant.agent != AGENT_UNKNOWN and actor == grant.agent)


def holder_text(grant: Row[Any]) -> str:
    if grant.requested_by and grant.requested_by != grant.agent:
        return f"agent {grant.agent}, asked for by {grant.requested_by}"
    return f"agent {grant.agent}" + ("" if grant.requested_by else " (asked for without a token)")
