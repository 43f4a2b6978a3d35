"""The gate (policy decision point): may an agent run this command autonomously right now?

Decisions, in order: kill switch engaged -> deny; store unreadable -> deny (fail closed); type paused
by a breaker -> needs_approval; phase L3 -> needs_approval; type not whitelisted -> needs_approval;
a policy refusing (rate limit, confidence, maintenance window) -> its decision; else allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from engine.clock import Clock
from storage import state_repo
from storage.store import Store

ALLOW, NEEDS_APPROVAL, DENY = "allow", "needs_approval", "deny"
EXIT_CODES = {ALLOW: 0, NEEDS_APPROVAL: 3, DENY: 4}


@dataclass(frozen=True)
class GateDecision:
    decision: str
    reason: str
    command_type: str
    phase: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "commandType": self.command_type,
                "phase": self.phase, **self.extra}


class PolicyCheck(Protocol):
    def __call__(self, conn, state, command_type: str, confidence: float | None, action_class: str | None,
                 now) -> tuple[GateDecision | None, dict[str, Any]]: ...


class Gate:
    def __init__(self, store: Store, clock: Clock, *, policy: PolicyCheck | None = None,
                 on_decision: Callable[[GateDecision], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        self.on_decision = on_decision

    def decide(self, command_type: str, *, confidence: float | None = None,
               action_class: str | None = None) -> GateDecision:
        try:
            decision = self._decide(command_type, confidence, action_class)
        except Exception as exc:  # fail closed: whatever went wrong, nothing runs autonomously
            decision = GateDecision(DENY, f"store unreachable or unreadable, failing closed: "
                                          f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                                    command_type, None)
        if self.on_decision is not None:
            self.on_decision(decision)
        return decision

    def _decide(self, command_type: str, confidence: float | None, action_class: str | None) -> GateDecision:
        if not command_type or not command_type.strip():
            return GateDecision(DENY, "no command type given", command_type or "", None)
        if confidence is not None and not (0.0 <= confidence <= 1.0):
            return GateDecision(DENY, f"confidence {confidence} is outside 0..1", command_type, None)
        with self.store.read() as conn:
            state = state_repo.get_state(conn)
            if state is None:
                return GateDecision(DENY, "the store has no governance state (not initialised)", command_type, None)
            phase = state.current_phase
            if state.kill_switch_engaged:
                return GateDecision(DENY, f"kill switch engaged by {state.kill_switch_by}: "
                                          f"{state.kill_switch_reason}", command_type, phase)
            if command_type in (state.paused_command_types or []):
                return GateDecision(NEEDS_APPROVAL, f"{command_type} is paused by a circuit breaker until "
                                                    "its event is resolved", command_type, phase)
            if phase == "L3":
                return GateDecision(NEEDS_APPROVAL, "phase L3: every command needs human approval",
                                    command_type, phase)
            if command_type not in (state.command_whitelist or []):
                return GateDecision(NEEDS_APPROVAL, f"{command_type} is not on the {phase} whitelist",
                                    command_type, phase)
            extra: dict[str, Any] = {}
            if self.policy is not None:
                refused, extra = self.policy(conn, state, command_type, confidence, action_class, self.clock.now())
                if refused is not None:
                    return refused
        return GateDecision(ALLOW, f"{command_type} is whitelisted at {phase}", command_type, phase, extra)
