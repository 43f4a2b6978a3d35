"""Gate policies (seed 002's PolicyEngine), per action class or command type, from the config file:

    [policies.service_restart]
    command_types = ["restart_service"]     # default: the policy's own name
    enabled = true
    max_per_day = 2                          # autonomous executions in the last 24 hours
    max_per_week = 7                         # ... in the last 7 days
    confidence_threshold = 0.90
    maintenance_window_required = true
    maintenance_window = "02:00-05:00"       # UTC; may wrap midnight
    notification_level = "alert"             # info | alert | approval_required
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from engine.errors import InvalidInput
from engine.breakers import CLOCK_SKEW
from engine.gate import NEEDS_APPROVAL, GateDecision
from storage import events_repo

NOTIFICATION_LEVELS = ("info", "alert", "approval_required")
_KEYS = {"command_types", "enabled", "max_per_day", "max_per_week", "confidence_threshold",
         "maintenance_window_required", "maintenance_window", "notification_level"}


@dataclass(frozen=True)
class Policy:
    name: str
    command_types: tuple[str, ...]
    enabled: bool = True
    max_per_day: int | None = None
    max_per_week: int | None = None
    confidence_threshold: float | None = None
    maintenance_window_required: bool = False
    maintenance_window: tuple[time, time] | None = None
    notification_level: str = "info"

    def in_window(self, now: datetime) -> bool:
        if self.maintenance_window is None:
            return False
        start, end = self.maintenance_window
        t = now.timetz().replace(tzinfo=None)
        return start <= t < end if start <= end else (t >= start or t < end)

    def to_json(self) -> dict[str, Any]:
        mw = self.maintenance_window
        return {"name": self.name, "commandTypes": list(self.command_types), "enabled": self.enabled,
                "maxPerDay": self.max_per_day, "maxPerWeek": self.max_per_week,
                "confidenceThreshold": self.confidence_threshold,
                "maintenanceWindowRequired": self.maintenance_window_required,
                "maintenanceWindow": f"{mw[0]:%H:%M}-{mw[1]:%H:%M} UTC" if mw else None,
                "notificationLevel": self.notification_level}


def _window(text: Any, where: str) -> tuple[time, time]:
    try:
        a, b = str(text).split("-")
        return time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
    except ValueError:
        raise InvalidInput(f"{where}.maintenance_window: {text!r} is not HH:MM-HH:MM (UTC)") from None


def load_policies(section: dict[str, Any] | None) -> list[Policy]:
    out = []
    for name, raw in (section or {}).items():
        where = f"[policies.{name}]"
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where} must be a table")
        unknown = set(raw) - _KEYS
        if unknown:
            raise InvalidInput(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        for key in ("max_per_day", "max_per_week"):
            v = raw.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise InvalidInput(f"{where}.{key}: must be a whole number >= 0")
        ct = raw.get("confidence_threshold")
        if ct is not None and (isinstance(ct, bool) or not isinstance(ct, (int, float)) or not 0 <= ct <= 1):
            raise InvalidInput(f"{where}.confidence_threshold: must be a number from 0 to 1")
        level = raw.get("notification_level", "info")
        if level not in NOTIFICATION_LEVELS:
            raise InvalidInput(f"{where}.notification_level: {level!r} is not one of {', '.join(NOTIFICATION_LEVELS)}")
        types = raw.get("command_types", [name])
        if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
            raise InvalidInput(f"{where}.command_types: must be a list of command type names")
        mw = _window(raw["maintenance_window"], where) if "maintenance_window" in raw else None
        required = bool(raw.get("maintenance_window_required", False))
        if required and mw is None:
            raise InvalidInput(f"{where}: maintenance_window_required needs maintenance_window = \"HH:MM-HH:MM\"")
        out.append(Policy(name, tuple(types), bool(raw.get("enabled", True)), raw.get("max_per_day"),
                          raw.get("max_per_week"), float(ct) if ct is not None else None, required, mw, level))
    return out


#: a rate-limit count is reused while no command event has arrived since, for at most this long: events
#: only age out of the window meanwhile, so a reused count can only be too high (refusing early, safe)
COUNT_REUSE = timedelta(seconds=30)


@dataclass
class PolicyEngine:
    policies: list[Policy] = field(default_factory=list)
    _counts: dict[tuple, tuple[int, datetime, int]] = field(default_factory=dict, repr=False)

    def _executions(self, conn, types: tuple[str, ...], span: timedelta, now: datetime, newest: int) -> int:
        cached = self._counts.get((types, span))
        if cached is not None and cached[0] == newest and timedelta(0) <= now - cached[1] < COUNT_REUSE:
            return cached[2]
        # through now and a little past it, like the breakers' windows (agents' clocks drift)
        used = events_repo.autonomous_executions(conn, list(types), now - span, now + CLOCK_SKEW)
        self._counts[(types, span)] = (newest, now, used)
        return used

    def find(self, command_type: str, action_class: str | None) -> Policy | None:
        if action_class:
            for p in self.policies:
                if p.name == action_class:
                    return p
        for p in self.policies:
            if command_type in p.command_types:
                return p
        return None

    def __call__(self, conn, state, command_type: str, confidence: float | None,
                 action_class: str | None, now: datetime) -> tuple[GateDecision | None, dict[str, Any]]:
        """(a refusal or None, extra fields for the decision: the policy and its remaining budget)."""
        policy = self.find(command_type, action_class)
        if policy is None:
            return None, {}
        phase = state.current_phase

        def refuse(reason: str, extra: dict) -> tuple[GateDecision, dict]:
            return GateDecision(NEEDS_APPROVAL, f"policy {policy.name}: {reason}", command_type, phase, extra), extra

        extra: dict[str, Any] = {"policy": policy.name, "notificationLevel": policy.notification_level}
        if not policy.enabled:
            return refuse("disabled, so every action needs approval", extra)
        budget = {}
        newest = events_repo.newest_command_event_id(conn) if (policy.max_per_day, policy.max_per_week) != \
            (None, None) else 0
        for key, limit, span in (("day", policy.max_per_day, timedelta(days=1)),
                                 ("week", policy.max_per_week, timedelta(days=7))):
            if limit is None:
                continue
            used = self._executions(conn, policy.command_types, span, now, newest)
            budget[key] = {"used": used, "limit": limit, "remaining": max(limit - used, 0)}
        extra["budget"] = budget
        for key in ("day", "week"):
            if key in budget and budget[key]["remaining"] == 0:
                return refuse(f"{'daily' if key == 'day' else 'weekly'} limit reached "
                              f"({budget[key]['used']}/{budget[key]['limit']})", extra)
        if policy.confidence_threshold is not None:
            if confidence is None:
                return refuse(f"confidence required (threshold {policy.confidence_threshold:.0%})", extra)
            if confidence < policy.confidence_threshold:
                return refuse(f"confidence {confidence:.0%} below threshold {policy.confidence_threshold:.0%}", extra)
        if policy.maintenance_window_required and not policy.in_window(now):
            return refuse(f"outside the maintenance window {policy.to_json()['maintenanceWindow']}", extra)
        return None, extra

    def explain(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self.policies]
