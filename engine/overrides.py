"""Human overrides: manual reversion to L3, the kill switch and its drill, the breaker mode.

Each works with nothing but the store: no scheduler, no worker, no network — so they work when the
scheduler is stopped or stuck. Alerts go to the outbox in the same transaction.

The kill switch has one entry for every caller (``kill_switch``: the CLI, the HTTP API and the
console) and two paths. The store's row is the record; when the store cannot be written, ``engage``
creates the marker file instead (engine/kill_marker.py), which every gate honours, and says so. The
engagement is recorded in the store by the next kill-switch change or the scheduler's tick
(``record_marker``), with its audit entry and its alert. Releasing needs the store and the role, and
removes both. An engagement is identified by its audit entry (storage/kill_switch_repo.py): a drill
releases only its own, and a real engage over a drill's engagement replaces it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Row

from engine import access
from engine.alerts import Alert
from engine.breakers import require_initialised, revert_state
from engine.clock import Clock, isoformat
from engine.domain import BREAKER_MODES, Decision, Phase
from engine.errors import Conflict, GovconError, InvalidInput
from engine.gate import Gate
from engine.kill_marker import KillMarker, MarkerError, MarkerInfo
from engine.redact import redact
from storage import audit, kill_switch_repo, state_repo
from storage.db import StoreUnavailable
from storage.store import Store

KILL_SWITCH_KEY = "govcon-kill-switch"
KILL_SWITCH_ACTIONS = ("engage", "release", "drill")
DRILL_REASON = "kill-switch drill"
log = logging.getLogger("govcon.alerts")  # where the alerts' own log lines go (engine/notifier.py)


def require_reason(reason: str | None, what: str) -> str:
    if not reason or not reason.strip():
        raise InvalidInput(f"{what} needs --reason saying why (it goes into the audit log and the alert)")
    return reason.strip()


@dataclass(frozen=True)
class OverrideResult:
    changed: bool
    message: str
    via: str | None = None        # the kill switch: "store", or "marker" when only the marker file holds it
    failed: bool = False          # a drill that failed
    engagement: int | None = None  # the audit seq of the engagement made (the drill's own)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"changed": self.changed, "message": self.message}
        if self.via is not None:
            doc["via"] = self.via
        return {**doc, **self.extra}


def kill_switch_json(state: Row | None, marker: MarkerInfo | None) -> dict[str, Any]:
    """``killSwitch`` of `status` and GET /api/governance/state: engaged when the store says so or the
    marker file is there; who, when and why from the store, else from the marker; ``marker`` is the
    marker file when it is there (null when not: /health names its path either way)."""
    in_store = bool(state is not None and state.kill_switch_engaged)
    doc: dict[str, Any] = {"engaged": in_store or marker is not None, "by": None, "at": None, "reason": None}
    if state is not None and in_store:
        doc.update(by=state.kill_switch_by, at=isoformat(state.kill_switch_at), reason=state.kill_switch_reason)
    elif marker is not None:
        doc.update(by=marker.by, at=isoformat(marker.at), reason=marker.reason)
    doc["marker"] = marker.to_json() if marker is not None else None
    return doc


def engage_by_marker(marker: KillMarker, actor: str, reason: str, at: datetime, cause: BaseException, *,
                     unavailable: str) -> OverrideResult:
    """The kill switch engaged by its marker file alone, because ``unavailable`` (the store, or the service a
    client talks to) could not take it; ``cause`` says why. Raises StoreUnavailable, saying the switch is NOT
    engaged, when the file cannot be created either."""
    why = (str(cause).splitlines() or [type(cause).__name__])[0]
    try:
        info, created = marker.engage(actor, reason, at)
    except MarkerError as exc:
        raise StoreUnavailable(f"{why}; and {exc}: the kill switch is NOT engaged") from cause
    if not created:
        return OverrideResult(False, f"{unavailable} ({why}); the kill switch is engaged already by marker file "
                                     f"{info.path}", via="marker")
    log.critical("KILL SWITCH ENGAGED by %s by marker file %s only (%s: %s); it will be recorded and alerted when "
                 "the store is back. Reason: %s", actor, info.path, unavailable, why, redact(reason))
    return OverrideResult(True, f"{unavailable}: engaged by marker file {info.path} only; it will be recorded when "
                                f"the store is back ({why})", via="marker")


class Overrides:
    def __init__(self, store: Store, clock: Clock, *,
                 enqueue_alert: Callable[[Connection, Alert, bool], Any] | None = None,
                 kill_marker: KillMarker | None = None, gate: Callable[[], Gate] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.enqueue_alert = enqueue_alert
        self.kill_marker = kill_marker
        self._gate = gate  # built on first use by the facade: only a drill needs it

    def _alert(self, conn: Connection, alert: Alert) -> None:
        if self.enqueue_alert is not None:
            self.enqueue_alert(conn, alert, False)

    def _marker(self) -> MarkerInfo | None:
        return self.kill_marker.engaged() if self.kill_marker is not None else None

    def revert(self, actor: str, reason: str | None) -> OverrideResult:
        reason = require_reason(reason, "reverting to L3")
        now = self.clock.now()
        with self.store.write(lane="safety") as conn:
            access.require_role(conn, actor, "revert")
            state = require_initialised(conn)
            if state.current_phase == Phase.L3 and not state.command_whitelist:
                return OverrideResult(False, "already at L3 with an empty whitelist; nothing changed")
            effect = revert_state(conn, state, now, actor=actor, reason=reason)
            audit.append(conn, at=now, actor=actor, action="phase.revert", target=Phase.L3, reason=reason,
                         details={"from": state.current_phase, "whitelist": list(state.command_whitelist or [])})
            self._alert(conn, Alert(kind="info", severity="high", title=f"Reverted to L3 by {actor}",
                                    body=f"{effect}. Reason: {reason}", dedup_key=f"govcon-revert-{now:%Y%m%d%H%M%S}",
                                    at=now, details={"from": state.current_phase}))
        return OverrideResult(True, effect)

    # --- the kill switch ------------------------------------------------------------------------

    def kill_switch(self, action: str, actor: str, reason: str | None) -> OverrideResult:
        """The one entry of the CLI, the HTTP API and the console: engage (with the marker file when the
        store cannot be written), release, or drill."""
        if action == "engage":
            return self.engage(actor, reason)
        if action == "release":
            return self.release_kill_switch(actor, reason)
        if action == "drill":
            if self._gate is None:
                raise InvalidInput("a kill-switch drill needs the gate; this Overrides has none")
            return self.drill(actor, self._gate(), reason=reason)
        raise InvalidInput(f"unknown kill-switch action {action!r}: use {', '.join(KILL_SWITCH_ACTIONS)}")

    def engage(self, actor: str, reason: str | None) -> OverrideResult:
        """Engage in the store; when it cannot be written — unreachable, locked, full, read-only, or failing in
        any other way (a corrupt page raises sqlite3.DatabaseError, not StoreUnavailable) — by the marker file,
        and say so. Only a refusal the store gave (the role, the input) is not worked around."""
        reason = require_reason(reason, "engaging the kill switch")
        try:
            return self.engage_kill_switch(actor, reason)
        except GovconError:
            raise  # PermissionDenied, NotInitialised, InvalidInput: the store answered
        except Exception as exc:
            if self.kill_marker is None:
                raise
            return self._engage_by_marker(actor, reason, exc)

    def _engage_by_marker(self, actor: str, reason: str, cause: BaseException) -> OverrideResult:
        try:  # the role, where the store can still be read (a full disk reads fine)
            with self.store.read(lane="safety") as conn:
                access.require_role(conn, actor, "kill_switch.engage")
        except GovconError:
            raise
        except Exception:
            pass  # not even readable: the marker directory's permissions decide who may engage
        assert self.kill_marker is not None
        return engage_by_marker(self.kill_marker, actor, reason, self.clock.now(), cause,
                                unavailable="store not writable")

    def engage_kill_switch(self, actor: str, reason: str | None, *, drill: bool = False) -> OverrideResult:
        """Engage in the store (raises StoreUnavailable when it cannot be written; ``engage`` falls back)."""
        reason = require_reason(reason, "engaging the kill switch")
        now = self.clock.now()
        with self.store.write(lane="safety") as conn:
            access.require_role(conn, actor, "kill_switch.engage")
            state = require_initialised(conn)
            if drill and self._marker() is not None:
                raise Conflict("the kill switch is engaged by its marker file: release it before drilling")
            if not drill:
                state = self._record_marker(conn, state, now)
            took_over = None
            if state.kill_switch_engaged:
                last = kill_switch_repo.last_engagement(conn)
                if drill or last is None or not last[1].get("drill"):
                    return OverrideResult(False, f"the kill switch is engaged already (by {state.kill_switch_by} "
                                                 f"at {isoformat(state.kill_switch_at)}: {state.kill_switch_reason})",
                                          via="store")
                took_over = last[0]  # a drill's engagement: this one replaces it, and the drill leaves it be
            state_repo.update_state(conn, kill_switch_engaged=True, kill_switch_by=actor, kill_switch_at=now,
                                    kill_switch_reason=reason, updated_at=now)
            details: dict[str, Any] = {"drill": drill}
            if took_over is not None:
                details["replacedDrillEngagement"] = took_over
            seq = audit.append(conn, at=now, actor=actor, action=kill_switch_repo.ENGAGE_ACTION,
                               target="kill-switch", reason=reason, details=details)
            if drill:  # a drill informs the log; it does not page anyone
                self._alert(conn, Alert(kind="info", severity="low", title=f"[drill] kill switch engaged by {actor}",
                                        body=DRILL_REASON, dedup_key=f"{KILL_SWITCH_KEY}-drill", at=now))
            else:
                self._alert(conn, _engaged_alert(actor, reason, now))
        return OverrideResult(True, "kill switch ENGAGED: the gate denies every autonomous action", via="store",
                              engagement=seq)

    def release_kill_switch(self, actor: str, reason: str | None, *,
                            drill_engagement: int | None = None) -> OverrideResult:
        """Release in the store, then remove the marker file. The file goes only after the COMMIT (a
        release that fails to commit leaves the switch engaged); the release's audit entry names the
        file, so a file whose removal did not happen is removed later, never recorded as a new
        engagement. With ``drill_engagement``, only while that engagement (the drill's own) is still
        the current one, and the marker file is left alone."""
        reason = require_reason(reason, "releasing the kill switch")
        drill = drill_engagement is not None
        now = self.clock.now()
        with self.store.write(lane="safety") as conn:
            access.require_role(conn, actor, "kill_switch.release")
            state = require_initialised(conn)
            if not drill:
                state = self._record_marker(conn, state, now)
            if not state.kill_switch_engaged:
                left = None if drill else self._marker()
                if left is not None:  # released before, but its file could not be removed (nor just now, again)
                    raise MarkerError(f"the kill switch is released in the store, but its marker file {left.path} "
                                      "is still there and cannot be removed: the gate denies until it is removed "
                                      "(lsattr/chattr -i, or the directory's permissions)")
                return OverrideResult(False, "the kill switch is not engaged; nothing changed", via="store")
            if drill:
                last = kill_switch_repo.last_engagement(conn)
                if last is None or last[0] != drill_engagement:
                    return OverrideResult(False, f"left engaged: {state.kill_switch_by} engaged the kill switch "
                                                 f"for real during the drill ({state.kill_switch_reason})",
                                          via="store")
            marker = None if drill else self._marker()
            if marker is not None:
                assert self.kill_marker is not None
                self.kill_marker.check_removable()  # refused here, before anything is released
            state_repo.update_state(conn, kill_switch_engaged=False, kill_switch_by=None, kill_switch_at=None,
                                    kill_switch_reason=None, updated_at=now)
            audit.append(conn, at=now, actor=actor, action=kill_switch_repo.RELEASE_ACTION, target="kill-switch",
                         reason=reason, details={"engagedBy": state.kill_switch_by,
                                                 "engagedAt": isoformat(state.kill_switch_at),
                                                 "engagedFor": state.kill_switch_reason, "drill": drill,
                                                 "markerFile": marker.path if marker else None,
                                                 "markerIdentity": list(marker.identity) if marker else None})
            if not drill:
                self._alert(conn, Alert(kind="resolve", severity="critical", title=f"Kill switch released by {actor}",
                                        body=f"Reason: {reason}", dedup_key=KILL_SWITCH_KEY, at=now))
        if marker is None:
            return OverrideResult(True, "kill switch released", via="store")
        assert self.kill_marker is not None
        try:
            self.kill_marker.clear(expected=marker)
        except MarkerError as exc:
            return OverrideResult(True, f"kill switch released in the store, but {exc}: the gate denies until "
                                        f"the file is removed", via="store", failed=True)
        return OverrideResult(True, "kill switch released (and its marker file removed)", via="store")

    def record_marker(self) -> bool:
        """Record a marker-only engagement in the store (the scheduler's tick calls this); True if it did.
        Costs one stat when there is no marker."""
        if self._marker() is None:
            return False
        now = self.clock.now()
        with self.store.write(lane="safety") as conn:
            state = require_initialised(conn)
            before = bool(state.kill_switch_engaged)
            return bool(self._record_marker(conn, state, now).kill_switch_engaged) and not before

    def _record_marker(self, conn: Connection, state: Row, now: datetime) -> Row:
        """Inside a write: an engagement only the marker file holds goes into the store, audited and
        alerted. The file stays until the release (which removes both)."""
        marker = self._marker()
        if marker is None or state.kill_switch_engaged:
            return state
        released = kill_switch_repo.last_release(conn)
        if released is not None and released[1].get("markerIdentity") == list(marker.identity):
            assert self.kill_marker is not None  # released already; its removal did not happen: do it now
            try:
                self.kill_marker.clear(expected=marker)
            except MarkerError:
                log.error("the kill-switch marker file %s was released but cannot be removed", marker.path)
            return state
        by = marker.by or "unknown (marker file without details)"
        reason = marker.reason or "engaged by the kill-switch marker file (its details could not be written)"
        at = marker.at or now
        state_repo.update_state(conn, kill_switch_engaged=True, kill_switch_by=by, kill_switch_at=at,
                                kill_switch_reason=reason, updated_at=now)
        audit.append(conn, at=now, actor=by, action=kill_switch_repo.ENGAGE_ACTION, target="kill-switch",
                     reason=reason, details={"drill": False, "via": "marker file", "markerFile": marker.path,
                                             "engagedAt": isoformat(marker.at),
                                             "note": "who and why as the marker file says"})
        self._alert(conn, _engaged_alert(by, reason, now, via_marker=True))
        return require_initialised(conn)

    def drill(self, actor: str, gate: Gate, *, probe_type: str = "govcon-drill-probe",
              reason: str | None = None) -> OverrideResult:
        """Engage, check that the gate refuses, release its own engagement (never a real one made
        meanwhile); record the drill (readiness: Kill switch tested). A drill never uses the marker file."""
        with self.store.read(lane="safety") as conn:
            access.require_role(conn, actor, "kill_switch.release")
            if require_initialised(conn).kill_switch_engaged:
                raise Conflict("the kill switch is engaged for real: release it before drilling")
        marker = self._marker()
        if marker is not None:
            raise Conflict(f"the kill switch is engaged by its marker file {marker.path}: release it before drilling")
        why = f"{DRILL_REASON}: {reason.strip()}" if reason and reason.strip() else DRILL_REASON
        engaged = self.engage_kill_switch(actor, why, drill=True)
        if not engaged.changed:
            raise Conflict("the kill switch was engaged for real just now: release it before drilling")
        try:
            decision = gate.decide(probe_type)
        finally:
            released = self.release_kill_switch(actor, "kill-switch drill complete",
                                                drill_engagement=engaged.engagement)
        passed = decision.decision == Decision.DENY and "kill switch" in decision.reason
        details = f"gate answered {decision.decision}: {decision.reason}"
        if not released.changed:
            details += f"; {released.message}"
        now = self.clock.now()
        with self.store.write(lane="safety") as conn:
            state_repo.record_drill(conn, at=now, operator=actor, passed=passed,
                                    details=f"{details} ({why})" if why != DRILL_REASON else details)
            audit.append(conn, at=now, actor=actor, action="kill_switch.drill", target="kill-switch", reason=why,
                         details={"passed": passed, "gate": decision.to_json(), "released": released.changed})
        return OverrideResult(True, ("drill passed: " if passed else "DRILL FAILED: ") + details, via="store",
                              failed=not passed, extra={"passed": passed})

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


def _engaged_alert(actor: str, reason: str, now: datetime, *, via_marker: bool = False) -> Alert:
    recorded = " (recorded from its marker file: the store could not be written when it was engaged)" \
        if via_marker else ""
    return Alert(kind="trigger", severity="critical", title=f"KILL SWITCH ENGAGED by {actor}",
                 body=f"Every autonomous action is denied until it is released{recorded}. Reason: {reason}",
                 dedup_key=KILL_SWITCH_KEY, at=now)
