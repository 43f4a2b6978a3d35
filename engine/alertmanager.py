"""Alertmanager's webhook (payload version 4) as incident events.

A team's incidents start life as Alertmanager alerts; its webhook receiver posts them to
``POST /api/integrations/alertmanager`` and each *firing* alert becomes an incident event that goes
through the one ingest pipeline (and so can trip the Critical Incident rule). The event's id is the
alert's fingerprint plus its ``startsAt``: Alertmanager re-sends a firing alert at every
``repeat_interval`` and each re-send is stored once; the same alert firing again later (a new
``startsAt``) is a new incident. *Resolved* alerts close nothing: an incident is a fact about the past
and breaker events are resolved by a person with a note; they are counted in the answer and ignored.

Severity comes from a label (``severity`` by default), mapped onto govcon's four; an alert without it
gets the configured default, and the answer says so. ``service`` and ``command_id`` come from labels or,
failing that, annotations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.domain import SEVERITIES
from engine.errors import InvalidInput
from engine.events import DEFAULT_TIMING, EventError, EventTiming, parse_event

#: Alertmanager's usual severity words, onto govcon's critical | high | medium | low
SEVERITY_WORDS: dict[str, str] = {
    "critical": "critical", "fatal": "critical", "emergency": "critical", "page": "critical",
    "high": "high", "error": "high", "major": "high",
    "medium": "medium", "warning": "medium", "warn": "medium", "minor": "medium",
    "low": "low", "info": "low", "informational": "low", "none": "low",
}
MAX_ALERTS = 1000
_FRACTION = re.compile(r"(\.\d{6})\d+")  # Go writes nanoseconds; ISO parsing here takes microseconds


@dataclass(frozen=True)
class AlertmanagerMapping:
    """``[integrations.alertmanager]`` in the config file."""

    severity_label: str = "severity"
    default_severity: str = "high"
    service_label: str = "service"
    command_label: str = "command_id"

    def __post_init__(self) -> None:
        if self.default_severity not in SEVERITIES:
            raise InvalidInput(f"[integrations.alertmanager] default_severity {self.default_severity!r} is not one "
                               f"of {', '.join(SEVERITIES)}")


@dataclass
class Converted:
    events: list[dict[str, Any]] = field(default_factory=list)
    resolved_ignored: int = 0
    defaulted: list[str] = field(default_factory=list)  # fingerprints of alerts without a severity label
    unmapped: dict[str, str] = field(default_factory=dict)  # fingerprint → the severity word not understood

    def summary(self) -> dict[str, Any]:
        return {"firing": len(self.events), "resolvedIgnored": self.resolved_ignored,
                "defaultSeverity": self.defaulted, "unknownSeverity": self.unmapped}


def incidents_from_webhook(payload: Any, mapping: AlertmanagerMapping, now: datetime,
                           timing: EventTiming = DEFAULT_TIMING) -> Converted:
    """The incident events of a webhook payload, each checked as the ingest pipeline will check it;
    InvalidInput naming the alert and field when one is wrong (then nothing of the payload is stored)."""
    if not isinstance(payload, dict):
        raise InvalidInput("body: an Alertmanager webhook payload is a JSON object")
    version = payload.get("version")
    if version != "4":
        raise InvalidInput(f"body.version: {version!r} is not supported (Alertmanager sends \"4\")")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise InvalidInput("body.alerts: must be a list of alerts")
    if len(alerts) > MAX_ALERTS:
        raise InvalidInput(f"body.alerts: {len(alerts)} alerts in one payload, more than {MAX_ALERTS} "
                           "(set max_alerts in the receiver)")
    out = Converted()
    for i, alert in enumerate(alerts):
        where = f"body.alerts[{i}]"
        if not isinstance(alert, dict):
            raise InvalidInput(f"{where}: must be an object")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise InvalidInput(f"{where}.status: {status!r} is neither 'firing' nor 'resolved'")
        labels = _strings(alert, "labels", where)
        annotations = _strings(alert, "annotations", where, required=False)
        fingerprint = alert.get("fingerprint")
        if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-fA-F]{1,64}", fingerprint):
            raise InvalidInput(f"{where}.fingerprint: {fingerprint!r} is not an Alertmanager fingerprint (hex)")
        starts = alert.get("startsAt")
        if not isinstance(starts, str) or not starts:
            raise InvalidInput(f"{where}.startsAt: must be a timestamp")
        if status == "resolved":
            out.resolved_ignored += 1
            continue
        word = labels.get(mapping.severity_label)
        if word is None:
            severity = mapping.default_severity
            out.defaulted.append(fingerprint)
        else:
            mapped = SEVERITY_WORDS.get(word.strip().lower())
            if mapped is not None:
                severity = mapped
            else:
                severity = mapping.default_severity
                out.unmapped[fingerprint] = word[:100]
        at = _FRACTION.sub(r"\1", starts)
        event: dict[str, Any] = {"kind": "incident", "id": f"am-{fingerprint}-{at}"[:200], "severity": severity,
                                 "at": at}
        for key, label in (("service", mapping.service_label), ("command_id", mapping.command_label)):
            value = labels.get(label) or annotations.get(label)
            if value:
                event[key] = value
        try:
            parse_event(event, now, timing)
        except EventError as exc:
            source = {"at": "startsAt", "id": "fingerprint"}.get(exc.field, f"labels.{exc.field}")
            raise InvalidInput(f"{where}.{source}: {exc.message}") from None
        out.events.append(event)
    return out


def _strings(alert: dict, key: str, where: str, *, required: bool = True) -> dict[str, str]:
    value = alert.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidInput(f"{where}.{key}: must be an object of strings")
    return value
