"""Alert sinks from config, routing by severity, and each sink type's payload (no network here)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from engine.alerts import DEFAULT_SEVERITIES, Alert, SinkConfig, format_payload, load_sinks, log_level, route
from engine.errors import InvalidInput

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SLACK_URL = "https://hooks.slack.com/services/T0AAA/B0BBB/sEcReTpAtH"
RK = "R0UT1NGKEY-not-in-any-payload-but-pagerduty"


def alert(severity: str = "critical", kind: str = "trigger", **kw) -> Alert:
    fields = {"title": "Circuit breaker tripped: High Error Rate", "body": "errorRate > 0.05 over 5m",
              "dedup_key": "govcon-breaker-cbe-1", "at": AT, "details": {"errorRate": 0.31}, **kw}
    return Alert(kind=kind, severity=severity, **fields)


def sinks_config() -> dict:
    return {"sinks": [
        {"name": "oncall", "type": "pagerduty", "url": "https://events.pagerduty.com/v2/enqueue", "routing_key": RK},
        {"name": "ops-chat", "type": "slack", "url": SLACK_URL},
        {"name": "archive", "type": "webhook", "url": "http://127.0.0.1:9/alerts", "timeout": 2},
    ]}


def test_sinks_load_with_defaults_by_type():
    oncall, chat, archive = load_sinks(sinks_config())
    assert oncall == SinkConfig("oncall", "pagerduty", "https://events.pagerduty.com/v2/enqueue",
                                frozenset({"critical"}), RK, 5.0)
    assert chat.severities == frozenset({"critical", "high"}) and chat.routing_key is None
    assert archive.severities == frozenset({"critical", "high", "medium", "low"}) and archive.timeout == 2.0
    assert load_sinks({}) == [] and load_sinks(None) == [] and load_sinks({"sinks": []}) == []


def test_configured_severities_override_the_default():
    cfg = {"sinks": [{"name": "quiet", "type": "slack", "url": SLACK_URL, "severities": ["critical"]}]}
    assert load_sinks(cfg)[0].severities == frozenset({"critical"})


@pytest.mark.parametrize("entry, message", [
    ({"type": "slack", "url": SLACK_URL}, "alert sink #1: name is required"),
    ({"name": "x", "type": "email", "url": SLACK_URL}, "alert sink 'x': type must be one of webhook, slack, pagerduty"),
    ({"name": "x", "type": "slack"}, "alert sink 'x': url must be an http:// or https:// URL"),
    ({"name": "x", "type": "webhook", "url": "ftp://host/x"}, "alert sink 'x': url must be"),
    ({"name": "x", "type": "webhook", "url": "http://"}, "alert sink 'x': url must be"),
    ({"name": "x", "type": "pagerduty", "url": "https://e.example/v2/enqueue"},
     "alert sink 'x': routing_key is required for a pagerduty sink"),
    ({"name": "x", "type": "slack", "url": SLACK_URL, "routing_key": "k"},
     "alert sink 'x': routing_key is only for pagerduty sinks"),
    ({"name": "x", "type": "slack", "url": SLACK_URL, "severities": ["critical", "urgent"]},
     "alert sink 'x': severities has 'urgent'"),
    ({"name": "x", "type": "slack", "url": SLACK_URL, "severities": "critical"},
     "alert sink 'x': severities must be a non-empty list"),
    ({"name": "x", "type": "slack", "url": SLACK_URL, "severities": []},
     "alert sink 'x': severities must be a non-empty list"),
    ({"name": "x", "type": "slack", "url": SLACK_URL, "timeout": 0}, "alert sink 'x': timeout must be a number"),
    ({"name": "x", "type": "slack", "url": SLACK_URL, "timeout": "5"}, "alert sink 'x': timeout must be a number"),
    ({"name": "x", "type": "slack", "url": SLACK_URL, "timeout": True}, "alert sink 'x': timeout must be a number"),
    ({"name": "x", "type": "slack", "url": SLACK_URL, "timeout": 600}, "alert sink 'x': timeout must be a number"),
    ({"name": "x", "type": "slack", "url": SLACK_URL, "channel": "#ops"}, "alert sink 'x': unknown field 'channel'"),
    ("slack", "alert sink #1: must be a table"),
])
def test_invalid_sinks_are_refused_naming_the_sink_and_field(entry, message):
    with pytest.raises(InvalidInput) as err:
        load_sinks({"sinks": [entry]})
    assert str(err.value).startswith(message)


def test_errors_and_reprs_never_show_a_secret_url_or_key():
    bad = {"name": "chat", "type": "slack", "url": "gopher://hooks.slack.com/services/T0AAA/B0BBB/sEcReTpAtH"}
    with pytest.raises(InvalidInput) as err:
        load_sinks({"sinks": [bad]})
    assert "sEcReTpAtH" not in str(err.value)
    shown = repr(load_sinks(sinks_config()))
    assert "sEcReTpAtH" not in shown and RK not in shown and "oncall" in shown


def test_sink_names_must_be_unique_and_sinks_an_array():
    entry = {"name": "dup", "type": "slack", "url": SLACK_URL}
    with pytest.raises(InvalidInput, match="alert sink 'dup': name is used by another sink"):
        load_sinks({"sinks": [entry, dict(entry)]})
    with pytest.raises(InvalidInput, match=r"\[\[alerts.sinks\]\]"):
        load_sinks({"sinks": {"name": "x"}})


@pytest.mark.parametrize("severity, expected", [
    ("critical", ["oncall", "ops-chat", "archive"]),
    ("high", ["ops-chat", "archive"]),
    ("medium", ["archive"]),
    ("low", ["archive"]),
])
def test_routing_by_severity(severity, expected):
    assert [s.name for s in route(load_sinks(sinks_config()), alert(severity))] == expected


def test_without_a_webhook_medium_and_low_reach_only_the_log():
    sinks = load_sinks(sinks_config())[:2]
    assert route(sinks, alert("medium")) == [] and route(sinks, alert("low")) == []
    assert DEFAULT_SEVERITIES["pagerduty"] == {"critical"}


@pytest.mark.parametrize("severity, kind, level", [
    ("critical", "trigger", logging.CRITICAL), ("high", "trigger", logging.ERROR),
    ("medium", "trigger", logging.WARNING), ("low", "trigger", logging.INFO),
    ("critical", "resolve", logging.INFO), ("critical", "info", logging.INFO),
])
def test_log_levels(severity, kind, level):
    assert log_level(alert(severity, kind)) == level


@pytest.mark.parametrize("ours, theirs", [("critical", "critical"), ("high", "error"), ("medium", "warning"),
                                          ("low", "info")])
def test_pagerduty_trigger_payload_maps_severity(ours, theirs):
    oncall = load_sinks(sinks_config())[0]
    doc = format_payload(oncall, alert(ours, title="two\nlines"))
    assert doc == {"routing_key": RK, "event_action": "trigger", "dedup_key": "govcon-breaker-cbe-1",
                   "payload": {"summary": "two lines", "source": "govcon", "severity": theirs,
                               "timestamp": "2026-11-20T12:00:00Z",
                               "custom_details": {"body": "errorRate > 0.05 over 5m", "kind": "trigger",
                                                  "errorRate": 0.31}}}


def test_pagerduty_resolve_carries_only_key_action_and_dedup_key():
    oncall = load_sinks(sinks_config())[0]
    assert format_payload(oncall, alert(kind="resolve")) == {
        "routing_key": RK, "event_action": "resolve", "dedup_key": "govcon-breaker-cbe-1"}


def test_slack_payload_is_escaped_mrkdwn_with_details_and_context():
    chat = load_sinks(sinks_config())[1]
    doc = format_payload(chat, alert("high", body="a < b & c", details={"observed": {"errorRate": 0.31}}))
    assert doc["text"] == ":warning: *[HIGH]* Circuit breaker tripped: High Error Rate\na &lt; b &amp; c"
    section, fields, context = doc["blocks"]
    assert section["text"] == {"type": "mrkdwn", "text": doc["text"]}
    assert fields["fields"] == [{"type": "mrkdwn", "text": "*observed*\nerrorRate=0.31"}]
    assert context["elements"][0]["text"].endswith("2026-11-20T12:00:00Z · govcon-breaker-cbe-1")
    resolved = format_payload(chat, alert("high", kind="resolve"))
    assert resolved["text"].startswith(":white_check_mark: *Resolved* Circuit breaker tripped")


def test_webhook_payload_is_the_alert_itself():
    archive = load_sinks(sinks_config())[2]
    assert format_payload(archive, alert("low", kind="info")) == {
        "kind": "info", "severity": "low", "title": "Circuit breaker tripped: High Error Rate",
        "body": "errorRate > 0.05 over 5m", "dedup_key": "govcon-breaker-cbe-1", "at": "2026-11-20T12:00:00Z",
        "source": "govcon", "details": {"errorRate": 0.31}}


@pytest.mark.parametrize("change, message", [
    ({"kind": "page"}, "alert kind 'page'"),
    ({"severity": "urgent"}, "alert severity 'urgent'"),
    ({"dedup_key": ""}, "dedup_key must be 1 to 200"),
    ({"dedup_key": "k" * 201}, "dedup_key must be 1 to 200"),
    ({"at": datetime(2026, 11, 20, 12, 0)}, "timezone-aware"),
    ({"details": ["x"]}, "details must be a dict"),
])
def test_malformed_alerts_are_refused(change, message):
    fields = {"kind": "trigger", "severity": "critical", "title": "t", "body": "b", "dedup_key": "k", "at": AT,
              **change}
    with pytest.raises(ValueError, match=message):
        Alert(**fields)
