"""Alerts: the value the engine raises, the sinks that carry it to people, and each sink's payload.

Routing is by severity (seed 003's tiers): critical pages and chats, high chats, medium and low are
logged only. Every alert is logged (logger ``govcon.alerts``) whatever the sinks; a sink's
``severities`` may widen or narrow its share.

The sinks live in the store (table ``alert_sinks``, `govcon alerts sinks set|delete`, audited), so that
every alert enters the outbox routed the same whichever process raised it, and the scheduler's leader
delivers with the same sinks whoever started it. The config file's ``[alerts]`` only seeds them at
`govcon db init` and `govcon db import-config`, in this spelling::

    [[alerts.sinks]]
    name = "oncall"
    type = "pagerduty"            # webhook | slack | pagerduty | smtp
    url = "https://events.pagerduty.com/v2/enqueue"
    routing_key = "..."           # pagerduty only; kept in config, never stored in the outbox
    severities = ["critical"]     # optional; defaults by type
    timeout = 5.0                 # optional, seconds

An ``smtp`` sink mails (the weekly governance report by default, as text and HTML)::

    [[alerts.sinks]]
    name = "stakeholders"
    type = "smtp"
    url = "smtp://mail.example.com:587"   # STARTTLS, required; smtps://host:465 for TLS from the start
    from = "govcon@example.com"
    to = ["ops@example.com", "cto@example.com"]
    username = "govcon"                   # optional; the password comes from the environment:
    password_env = "GOVCON_SMTP_PASSWORD" # the unit's EnvironmentFile, never the config file
    ca_file = "/etc/ssl/mail-ca.pem"      # optional: a private CA
    severities = ["critical"]             # optional: alerts too (default none: reports only)

``reports`` (default true for smtp, false otherwise) sends each cycle's report to the sink.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from engine.clock import isoformat
from engine.errors import InvalidInput
from engine.redact import redact

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
KINDS: tuple[str, ...] = ("trigger", "resolve", "info")
SINK_TYPES: tuple[str, ...] = ("webhook", "slack", "pagerduty", "smtp")
DEFAULT_SEVERITIES: dict[str, frozenset[str]] = {
    "pagerduty": frozenset({"critical"}),
    "slack": frozenset({"critical", "high"}),
    "webhook": frozenset(SEVERITIES),
    "smtp": frozenset(),  # the weekly report only, unless severities says otherwise
}
#: the dedup key of a governance report's alert: "govcon-report-<report id>"
REPORT_DEDUP_PREFIX = "govcon-report-"
#: the kill switch's own incident; other pages are folded into it while it is engaged
KILL_SWITCH_DEDUP_KEY = "govcon-kill-switch"
#: our severities in PagerDuty's vocabulary (Events API v2 accepts critical, error, warning, info)
PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
DEDUP_KEY_MAX = 200  # the outbox column's width
_SINK_FIELDS = {"name", "type", "url", "severities", "routing_key", "timeout", "reports",
                "from", "to", "username", "password_env", "ca_file"}
_SMTP_FIELDS = {"from", "to", "username", "password_env", "ca_file"}
_ADDRESS = re.compile(r"[^@\s<>,;\"]{1,64}@[A-Za-z0-9.\-]{1,253}")
#: the environment variables a mail sink may read its password from: names set aside for that alone. A sink is
#: editable through the service by ops-leads; any other name would let one send the service's own secrets (the
#: store's URL with its password, GOVCON_DATABASE_URL) as the SMTP password to a server of their choosing
PASSWORD_ENV_PREFIX = "GOVCON_SMTP_"
_ENV_NAME = re.compile(PASSWORD_ENV_PREFIX + r"[A-Z0-9_]{1,100}")


def password_env_allowed(name: str | None) -> bool:
    """Whether a sink may read its password from this environment variable (``PASSWORD_ENV_PREFIX``)."""
    return isinstance(name, str) and _ENV_NAME.fullmatch(name) is not None
_MAX_TIMEOUT = 60.0


@dataclass(frozen=True)
class Alert:
    kind: str            # "trigger" | "resolve" | "info"
    severity: str        # critical | high | medium | low
    title: str           # one line
    body: str            # a few lines for people
    dedup_key: str       # stable per incident: the trigger and its resolve share it
    at: datetime         # aware UTC
    details: dict = field(default_factory=dict)   # observed values etc (JSON-able)
    source: str = "govcon"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if not self.dedup_key or len(self.dedup_key) > DEDUP_KEY_MAX:
            raise ValueError(f"alert dedup_key must be 1 to {DEDUP_KEY_MAX} characters, got {self.dedup_key!r}")
        if self.at.tzinfo is None:
            raise ValueError("alert time must be timezone-aware (UTC)")
        if not isinstance(self.details, dict):
            raise ValueError(f"alert details must be a dict, got {type(self.details).__name__}")


@dataclass(frozen=True)
class SinkConfig:
    name: str
    type: str   # "webhook" | "slack" | "pagerduty"
    url: str
    severities: frozenset[str]
    routing_key: str | None = None
    timeout: float = 5.0
    reports: bool = False  # each governance cycle's report goes to this sink
    mail_from: str | None = None  # smtp only, and the rest
    mail_to: tuple[str, ...] = ()
    username: str | None = None
    password_env: str | None = None  # the name of the environment variable, never the password
    ca_file: str | None = None

    def __repr__(self) -> str:  # the URL and routing key are secrets (Slack's URL is its credential)
        return (f"SinkConfig(name={self.name!r}, type={self.type!r}, url={redact(self.url)!r}, "
                f"severities={sorted(self.severities)!r}, routing_key={'[REDACTED]' if self.routing_key else None}, "
                f"timeout={self.timeout!r}, reports={self.reports!r})")


def load_sinks(section: dict | None) -> list[SinkConfig]:
    """The sinks of the config file's ``[alerts]`` table, validated; errors name the sink and field."""
    if not section:
        return []
    if not isinstance(section, dict):
        raise InvalidInput("[alerts] must be a table")
    entries = section.get("sinks", [])
    if not isinstance(entries, list):
        raise InvalidInput("alerts.sinks must be an array of tables: write each sink as [[alerts.sinks]]")
    sinks: list[SinkConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        sink = _load_sink(entry, index)
        if sink.name in seen:
            raise InvalidInput(f"alert sink {sink.name!r}: name is used by another sink; names must be unique")
        seen.add(sink.name)
        sinks.append(sink)
    return sinks


def _load_sink(entry: Any, index: int) -> SinkConfig:
    where = f"alert sink #{index}" if index else "alert sink"
    if not isinstance(entry, dict):
        raise InvalidInput(f"{where}: must be a table ([[alerts.sinks]]), got {type(entry).__name__}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise InvalidInput(f"{where}: name is required (a non-empty string of at most 100 characters)")
    where = f"alert sink {name!r}"
    unknown = sorted(set(entry) - _SINK_FIELDS)
    if unknown:
        raise InvalidInput(f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(sorted(_SINK_FIELDS))}")
    kind = entry.get("type")
    if kind not in SINK_TYPES:
        raise InvalidInput(f"{where}: type must be one of {', '.join(SINK_TYPES)}, got {kind!r}")
    url = entry.get("url")
    schemes = ("smtp", "smtps") if kind == "smtp" else ("http", "https")
    if not isinstance(url, str) or not _is_url(url, schemes):
        shown = redact(url) if isinstance(url, str) else repr(url)
        wanted = ("an smtp:// (STARTTLS) or smtps:// (TLS) URL with a host" if kind == "smtp"
                  else "an http:// or https:// URL with a host")
        raise InvalidInput(f"{where}: url must be {wanted}, got {shown!r}")
    mail = _load_mail(entry, where) if kind == "smtp" else {}
    if kind != "smtp" and set(entry) & _SMTP_FIELDS:
        raise InvalidInput(f"{where}: {sorted(set(entry) & _SMTP_FIELDS)[0]!r} is only for smtp sinks, not {kind}")
    reports = entry.get("reports", kind == "smtp")
    if not isinstance(reports, bool):
        raise InvalidInput(f"{where}: reports must be true or false, got {reports!r}")
    severities = entry.get("severities")
    if severities is None:
        chosen = DEFAULT_SEVERITIES[kind]
    else:
        if isinstance(severities, str) or not isinstance(severities, list) or not severities:
            raise InvalidInput(f"{where}: severities must be a non-empty list such as [\"critical\", \"high\"]")
        bad = [s for s in severities if s not in SEVERITIES]
        if bad:
            raise InvalidInput(f"{where}: severities has {bad[0]!r}; choose from {', '.join(SEVERITIES)}")
        chosen = frozenset(severities)
    routing_key = entry.get("routing_key")
    if kind == "pagerduty":
        if not isinstance(routing_key, str) or not routing_key.strip():
            raise InvalidInput(f"{where}: routing_key is required for a pagerduty sink "
                               "(the integration key of an Events API v2 service)")
        routing_key = routing_key.strip()
    elif routing_key is not None:
        raise InvalidInput(f"{where}: routing_key is only for pagerduty sinks, not {kind}")
    timeout = entry.get("timeout", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
            or not 0 < timeout <= _MAX_TIMEOUT:
        raise InvalidInput(f"{where}: timeout must be a number of seconds above 0 and at most "
                           f"{_MAX_TIMEOUT:g}, got {timeout!r}")
    return SinkConfig(name=name.strip(), type=kind, url=url, severities=chosen, routing_key=routing_key,
                      timeout=float(timeout), reports=reports, **mail)


# --- sinks in the store: what is shown, what is secret ------------------------------------------------

#: the settings a stored sink shows (config spelling); the URL and the routing key are its secret
SHOWN_FIELDS = ("severities", "timeout", "reports", "from", "to", "username", "password_env", "ca_file")
SECRET_FIELDS = ("url", "routing_key")


def sink_entry(sink: SinkConfig) -> dict[str, Any]:
    """The sink in the config file's spelling (``[[alerts.sinks]]``), secrets included: what load_sinks reads."""
    entry: dict[str, Any] = {"name": sink.name, "type": sink.type, "url": sink.url,
                             "timeout": sink.timeout, "reports": sink.reports}
    if sink.severities:  # none: an smtp sink for the reports only, its default (an empty list is refused)
        entry["severities"] = [s for s in SEVERITIES if s in sink.severities]
    if sink.routing_key is not None:
        entry["routing_key"] = sink.routing_key
    if sink.type == "smtp":
        entry.update({"from": sink.mail_from, "to": list(sink.mail_to)})
        for key, value in (("username", sink.username), ("password_env", sink.password_env),
                           ("ca_file", sink.ca_file)):
            if value is not None:
                entry[key] = value
    return entry


def split_secret(sink: SinkConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings that may be shown, the secret): how the store keeps a sink."""
    entry = sink_entry(sink)
    secret = {k: entry.pop(k) for k in SECRET_FIELDS if k in entry}
    entry.pop("name")
    entry.pop("type")
    return entry, secret


def stored_sink(name: str, kind: str, settings: dict[str, Any], secret: dict[str, Any]) -> SinkConfig:
    """The SinkConfig of a stored row, validated as the config file's are (InvalidInput naming the field)."""
    return _load_sink({**(settings or {}), **(secret or {}), "name": name, "type": kind}, 0)


def secret_fingerprint(secret: dict[str, Any]) -> str:
    """What the audit log and `alerts sinks list` record of a sink's secret: enough to tell that it changed,
    never enough to recover it."""
    text = json.dumps({k: secret.get(k) for k in SECRET_FIELDS}, sort_keys=True)
    return hashlib.sha256(("govcon-sink:" + text).encode()).hexdigest()[:16]


def mask_url(url: str | None) -> str | None:
    """A sink's URL as it may be printed: scheme, host and port; the path, query and any user info (a
    Slack or webhook URL's credential) are never shown."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(masked)"
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def sink_view(sink: SinkConfig) -> dict[str, Any]:
    """A sink as `alerts sinks list|show`, the HTTP API and the audit log show it: secrets masked."""
    settings, secret = split_secret(sink)
    return {"name": sink.name, "kind": sink.type, "url": mask_url(sink.url),
            "routingKey": "(set, masked)" if sink.routing_key else None,
            "severities": settings.get("severities", []), "reports": sink.reports, "timeout": sink.timeout,
            "from": sink.mail_from, "to": list(sink.mail_to), "username": sink.username,
            "passwordEnv": sink.password_env, "caFile": sink.ca_file,
            "secretFingerprint": secret_fingerprint(secret)}


def _load_mail(entry: dict, where: str) -> dict[str, Any]:
    sender, to = entry.get("from"), entry.get("to")
    if not isinstance(sender, str) or not _ADDRESS.fullmatch(sender.strip()):
        raise InvalidInput(f"{where}: from must be one mail address such as govcon@example.com, got {sender!r}")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or len(to) > 100:
        raise InvalidInput(f"{where}: to must be a list of 1 to 100 mail addresses")
    for address in to:
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address.strip()):
            raise InvalidInput(f"{where}: to has {address!r}, which is not a mail address")
    username, password_env = entry.get("username"), entry.get("password_env")
    if username is not None and (not isinstance(username, str) or not username.strip()):
        raise InvalidInput(f"{where}: username must be a non-empty string")
    if password_env is not None and not password_env_allowed(password_env):
        raise InvalidInput(f"{where}: password_env must name an environment variable {PASSWORD_ENV_PREFIX}… (e.g. "
                           "GOVCON_SMTP_PASSWORD), not hold the password: a sink reads only the variables set aside "
                           "for mail passwords, never the service's others (its store URL, its tokens)")
    if (username is None) != (password_env is None):
        raise InvalidInput(f"{where}: username and password_env go together")
    ca_file = entry.get("ca_file")
    if ca_file is not None and not isinstance(ca_file, str):
        raise InvalidInput(f"{where}: ca_file must be a path")
    return {"mail_from": sender.strip(), "mail_to": tuple(a.strip() for a in to), "username": username,
            "password_env": password_env, "ca_file": ca_file}


def _is_url(url: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname)


def is_report(alert: Alert) -> bool:
    return alert.dedup_key.startswith(REPORT_DEDUP_PREFIX)


def route(sinks: Iterable[SinkConfig], alert: Alert) -> list[SinkConfig]:
    """The sinks that take this alert: a governance report goes to the sinks with ``reports``; any other
    alert to the sinks that take its severity."""
    if is_report(alert):
        return [s for s in sinks if s.reports]
    return [s for s in sinks if alert.severity in s.severities]


def report_alert(report_id: str, markdown: str, recommendation: str, at: datetime) -> Alert:
    """The alert that carries one governance report to the report sinks (mail, a webhook that asked)."""
    return Alert(kind="info", severity="low", title=f"Governance report {report_id}: {recommendation}",
                 body=markdown, dedup_key=f"{REPORT_DEDUP_PREFIX}{report_id}", at=at,
                 details={"report": report_id, "recommendation": recommendation})


def log_level(alert: Alert) -> int:
    """Python logging level for an alert: resolutions and info are INFO, triggers by severity."""
    if alert.kind != "trigger":
        return logging.INFO
    return {"critical": logging.CRITICAL, "high": logging.ERROR, "medium": logging.WARNING,
            "low": logging.INFO}[alert.severity]


def format_payload(sink: SinkConfig, alert: Alert) -> dict:
    """The JSON document ``sink`` expects for ``alert``."""
    if sink.type == "pagerduty":
        return _pagerduty(sink, alert)
    if sink.type == "slack":
        return _slack(alert)
    if sink.type == "webhook":
        return _webhook(alert)
    if sink.type == "smtp":
        return _mail(sink, alert)
    raise ValueError(f"alert sink {sink.name!r}: no payload format for type {sink.type!r}")


def _webhook(alert: Alert) -> dict:
    return {"kind": alert.kind, "severity": alert.severity, "title": alert.title, "body": alert.body,
            "dedup_key": alert.dedup_key, "at": isoformat(alert.at), "source": alert.source,
            "details": alert.details}


def _mail(sink: SinkConfig, alert: Alert) -> dict:
    """Subject, addresses and both bodies: a report's Markdown as text and rendered as HTML."""
    from markdown_it import MarkdownIt  # Rich's (and so Textual's) Markdown parser: already installed

    text = alert.body if is_report(alert) else f"{alert.body}\n\n{alert.source} · {alert.kind} · " \
        f"{alert.severity} · {isoformat(alert.at)} · {alert.dedup_key}"
    prefix = "" if is_report(alert) else f"[{alert.severity.upper()}] "
    html = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return {"subject": (prefix + _one_line(alert.title))[:250], "from": sink.mail_from, "to": list(sink.mail_to),
            "text": text, "html": f"<html><body>{html}</body></html>", "dedup_key": alert.dedup_key}


def _pagerduty(sink: SinkConfig, alert: Alert) -> dict:
    action = "resolve" if alert.kind == "resolve" else "trigger"
    doc: dict[str, Any] = {"routing_key": sink.routing_key, "event_action": action, "dedup_key": alert.dedup_key}
    if action == "resolve":
        return doc
    doc["payload"] = {
        "summary": _one_line(alert.title)[:1024],
        "source": alert.source,
        "severity": PAGERDUTY_SEVERITY[alert.severity],
        "timestamp": isoformat(alert.at),
        "custom_details": {"body": alert.body, "kind": alert.kind, **alert.details},
    }
    return doc


_SLACK_ICON = {"critical": ":rotating_light:", "high": ":warning:", "medium": ":large_yellow_circle:",
               "low": ":information_source:"}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(alert: Alert) -> dict:
    title = _slack_escape(_one_line(alert.title))
    if alert.kind == "resolve":
        headline = f":white_check_mark: *Resolved* {title}"
    else:
        headline = f"{_SLACK_ICON[alert.severity]} *[{alert.severity.upper()}]* {title}"
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{headline}\n{_slack_escape(alert.body)}"[:3000]}},
    ]
    fields = [{"type": "mrkdwn", "text": _slack_escape(f"*{k}*\n{_scalar(v)}")[:2000]}
              for k, v in list(alert.details.items())[:10]]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(
        f"{alert.source} · {alert.kind} · {alert.severity} · {isoformat(alert.at)} · {alert.dedup_key}")}]})
    return {"text": f"{headline}\n{_slack_escape(alert.body)}", "blocks": blocks}


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_scalar(v) for v in value)
    return str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())

