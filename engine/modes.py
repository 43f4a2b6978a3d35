"""Degradation modes (seed 003): ``normal``; ``minimal`` — only the action classes in
``minimal_allowed`` act autonomously, the others need approval; ``read_only`` — every action class but
``read`` is denied. The emergency stop beyond them is the kill switch.

Who may set and clear a mode: as engaging and releasing the kill switch — degrading (to minimal or
read_only) needs a role that may engage it, going back to normal one that may release it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import access
from engine.alerts import Alert
from engine.breakers import require_initialised
from engine.clock import Clock
from engine.errors import InvalidInput
from engine.gate import MODES
from storage import audit, state_repo
from storage.store import Store

_SEVERITY = {"normal": "medium", "minimal": "high", "read_only": "critical"}


class ModeSwitch:
    def __init__(self, store: Store, clock: Clock, *, enqueue_alert: Callable | None = None) -> None:
        self.store = store
        self.clock = clock
        self.enqueue_alert = enqueue_alert

    def get(self) -> dict[str, Any]:
        with self.store.read() as conn:
            state = require_initialised(conn)
        return {"mode": state.mode or "normal"}

    def set(self, actor: str, mode: str, reason: str | None) -> dict[str, Any]:
        if mode not in MODES:
            raise InvalidInput(f"unknown mode {mode!r}; modes are {', '.join(MODES)}")
        if not reason or not reason.strip():
            raise InvalidInput("changing the mode needs --reason saying why (it goes into the audit log and the alert)")
        reason = reason.strip()
        now = self.clock.now()
        with self.store.write() as conn:
            state = require_initialised(conn)
            before = state.mode or "normal"
            access.require_role(conn, actor, "kill_switch.release" if mode == "normal" else "kill_switch.engage")
            if before == mode:
                return {"mode": mode, "changed": False, "message": f"mode is {mode} already"}
            state_repo.update_state(conn, mode=mode, updated_at=now)
            audit.append(conn, at=now, actor=actor, action="mode.set", target=mode, reason=reason,
                         details={"before": before, "after": mode})
            if self.enqueue_alert is not None:
                self.enqueue_alert(conn, Alert(
                    kind="resolve" if mode == "normal" else "trigger",
                    severity=_SEVERITY[before if mode == "normal" else mode],
                    title=f"Mode {before} -> {mode} by {actor}", body=f"Reason: {reason}",
                    dedup_key="govcon-mode", at=now, details={"before": before, "after": mode}),
                    bool(state.kill_switch_engaged))
        return {"mode": mode, "changed": True, "message": f"mode {before} -> {mode}"}
