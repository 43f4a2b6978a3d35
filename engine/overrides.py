"""Human overrides: manual reversion to L3, the kill switch and its drill, the breaker mode.

Each works with nothing but the store: no scheduler, no worker, no network — so they work when the
scheduler is stopped or stuck. Alerts go to the outbox in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy.engine import Connection

from engine import access
from engine.alerts import Alert
from engine.breakers import require_initialised, revert_state
from engine.clock import Clock, isoformat
from engine.domain import BREAKER_MODES
from engine.errors import Conflict, InvalidInput
from engine.gate import DENY, Gate
from storage import audit, state_repo
from storage.store import Store

KILL_SWITCH_KEY = "govcon-kill-switch"


def _reason(reason: str | None, what: str) -> str:
    if not reason or not reason.strip():
        raise InvalidInput(f"{what} needs --reason saying why (it goes into the audit log and the alert)")
    return reason.strip()


@dataclass(frozen=True)
class OverrideResult:
    changed: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"changed": self.changed, "message": self.message}


class Overrides:
    def __init__(self, store: Store, clock: Clock, *,
                 enqueue_alert: Callable[[Connection, Alert, bool], Any] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.enqueue_alert = enqueue_alert

    def _alert(self, conn: Connection, alert: Alert) -> None:
        if self.enqueue_alert is not None:
            self.enqueue_alert(conn, alert, False)

    def revert(self, actor: str, reason: str | None) -> OverrideResult:
        reason = _reason(reason, "reverting to L3")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "revert")
            state = require_initialised(conn)
            if state.current_phase == "L3" and not state.command_whitelist:
                return OverrideResult(False, "already at L3 with an empty whitelist; nothing changed")
            effect = revert_state(conn, state, now, actor=actor, reason=reason)
            audit.append(conn, at=now, actor=actor, action="phase.revert", target="L3", reason=reason,
                         details={"from": state.current_phase, "whitelist": list(state.command_whitelist or [])})
            self._alert(conn, Alert(kind="info", severity="high", title=f"Reverted to L3 by {actor}",
                                    body=f"{effect}. Reason: {reason}", dedup_key=f"govcon-revert-{now:%Y%m%d%H%M%S}",
                                    at=now, details={"from": state.current_phase}))
        return OverrideResult(True, effect)

    def engage_kill_switch(self, actor: str, reason: str | None, *, drill: bool = False) -> OverrideResult:
        reason = _reason(reason, "engaging the kill switch")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "kill_switch.engage")
            state = require_initialised(conn)
            if state.kill_switch_engaged:
                return OverrideResult(False, f"the kill switch is engaged already (by {state.kill_switch_by} "
                                             f"at {isoformat(state.kill_switch_at)}: {state.kill_switch_reason})")
            state_repo.update_state(conn, kill_switch_engaged=True, kill_switch_by=actor, kill_switch_at=now,
                                    kill_switch_reason=reason, updated_at=now)
            audit.append(conn, at=now, actor=actor, action="kill_switch.engage", target="kill-switch", reason=reason)
            if drill:  # a drill informs the log; it does not page anyone
                self._alert(conn, Alert(kind="info", severity="low", title=f"[drill] kill switch engaged by {actor}",
                                        body="kill-switch drill", dedup_key=f"{KILL_SWITCH_KEY}-drill", at=now))
            else:
                self._alert(conn, Alert(kind="trigger", severity="critical", title=f"KILL SWITCH ENGAGED by {actor}",
                                        body=f"Every autonomous action is denied until it is released. "
                                             f"Reason: {reason}", dedup_key=KILL_SWITCH_KEY, at=now))
        return OverrideResult(True, "kill switch ENGAGED: the gate denies every autonomous action")

    def release_kill_switch(self, actor: str, reason: str | None, *, drill: bool = False) -> OverrideResult:
        reason = _reason(reason, "releasing the kill switch")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "kill_switch.release")
            state = require_initialised(conn)
            if not state.kill_switch_engaged:
                return OverrideResult(False, "the kill switch is not engaged; nothing changed")
            state_repo.update_state(conn, kill_switch_engaged=False, kill_switch_by=None, kill_switch_at=None,
                                    kill_switch_reason=None, updated_at=now)
            audit.append(conn, at=now, actor=actor, action="kill_switch.release", target="kill-switch",
                         reason=reason, details={"engagedBy": state.kill_switch_by,
                                                 "engagedAt": isoformat(state.kill_switch_at),
                                                 "engagedFor": state.kill_switch_reason})
            if not drill:
                self._alert(conn, Alert(kind="resolve", severity="critical", title=f"Kill switch released by {actor}",
                                        body=f"Reason: {reason}", dedup_key=KILL_SWITCH_KEY, at=now))
        return OverrideResult(True, "kill switch released")

    def drill(self, actor: str, gate: Gate, *, probe_type: str = "govcon-drill-probe",
              reason: str | None = None) -> OverrideResult:
        """Engage, check that the gate refuses, release; record the drill (readiness: Kill switch tested)."""
        with self.store.read() as conn:
            access.require_role(conn, actor, "kill_switch.release")
            if require_initialised(conn).kill_switch_engaged:
                raise Conflict("the kill switch is engaged for real: release it before drilling")
        why = f"kill-switch drill: {reason.strip()}" if reason and reason.strip() else "kill-switch drill"
        self.engage_kill_switch(actor, why, drill=True)
        try:
            decision = gate.decide(probe_type)
        finally:
            self.release_kill_switch(actor, "kill-switch drill complete", drill=True)
        passed = decision.decision == DENY and "kill switch" in decision.reason
        details = f"gate answered {decision.decision}: {decision.reason}"
        now = self.clock.now()
        with self.store.write() as conn:
            state_repo.record_drill(conn, at=now, operator=actor, passed=passed,
                                    details=f"{details} ({why})" if why != "kill-switch drill" else details)
            audit.append(conn, at=now, actor=actor, action="kill_switch.drill", target="kill-switch", reason=why,
                         details={"passed": passed, "gate": decision.to_json()})
        return OverrideResult(True, ("drill passed: " if passed else "DRILL FAILED: ") + details)

    def set_breaker_mode(self, actor: str, mode: str, reason: str | None = None) -> OverrideResult:
        if mode not in BREAKER_MODES:
            raise InvalidInput(f"unknown breaker mode {mode!r}; use enforce or shadow")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "rules.edit")
            state = require_initialised(conn)
            if state.breaker_mode == mode:
                return OverrideResult(False, f"breaker mode is {mode} already")
            state_repo.update_state(conn, breaker_mode=mode, updated_at=now)
            audit.append(conn, at=now, actor=actor, action="breaker.mode", target=mode, reason=reason or "",
                         details={"before": state.breaker_mode, "after": mode})
        return OverrideResult(True, f"breaker mode {state.breaker_mode} -> {mode}")
