"""Alertmanager in: the webhook receiver turns firing alerts into incidents (stored once however often
they are re-sent) that trip the Critical Incident rule; bad payloads are refused naming the field with
nothing stored; and a real Alertmanager routes a real alert to a real `govcon serve`."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from engine.alertmanager import AlertmanagerMapping, incidents_from_webhook
from engine.errors import InvalidInput
from storage import tables
from tests.conftest import OPERATOR
from tests.integration.test_api import api, make_api  # noqa: F401 - the fixture
from tests.integration.test_api_e2e import ready_store  # noqa: F401 - the fixture
from tests.serve_process import ServeProcess, free_port

PATH = "/api/integrations/alertmanager"


def alert(fingerprint: str = "a1b2c3d4e5f60718", *, status: str = "firing", severity: str | None = "critical",
          starts: str = "2026-11-20T09:59:30.123456789Z", **labels: str) -> dict:
    if severity is not None:
        labels["severity"] = severity
    return {"status": status, "labels": {"alertname": "ApiDown", **labels},
            "annotations": {"summary": "api is down"}, "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}


def payload(*alerts: dict) -> dict:
    return {"version": "4", "groupKey": "{}:{alertname=\"ApiDown\"}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "govcon", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


def incidents(store) -> list[tuple[str, str, str | None, str | None]]:
    t = tables.incidents
    with store.read() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t.c.incident_id, t.c.severity, t.c.service,
                                                         t.c.command_id).order_by(t.c.incident_id))]


# --- the conversion ------------------------------------------------------------------------------

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_severity_words_labels_and_the_default_are_mapped():
    out = incidents_from_webhook(payload(alert("01", severity="warning", service="api", command_id="cmd-9"),
                                         alert("02", severity=None), alert("03", severity="sev-x"),
                                         alert("04", status="resolved")), AlertmanagerMapping(), NOW)
    assert [(e["id"], e["severity"], e.get("service"), e.get("command_id")) for e in out.events] == [
        ("am-01-2026-11-20T09:59:30.123456Z", "medium", "api", "cmd-9"),
        ("am-02-2026-11-20T09:59:30.123456Z", "high", None, None),
        ("am-03-2026-11-20T09:59:30.123456Z", "high", None, None)]
    assert out.summary() == {"firing": 3, "resolvedIgnored": 1, "defaultSeverity": ["02"],
                             "unknownSeverity": {"03": "sev-x"}}
    custom = AlertmanagerMapping(severity_label="priority", default_severity="low")
    out = incidents_from_webhook(payload(alert("05", severity=None, priority="P1")), custom, NOW)
    assert out.events[0]["severity"] == "low"  # "P1" is not a severity word: the default, and said
    assert out.unmapped == {"05": "P1"}


@pytest.mark.parametrize("doc, named", [
    ([], "body: an Alertmanager webhook payload is a JSON object"),
    ({"version": "3", "alerts": []}, "body.version"),
    ({"version": "4"}, "body.alerts: must be a list"),
    (payload({"status": "firing"}), "body.alerts[0].labels"),
    (payload(alert(status="pending")), "body.alerts[0].status"),
    (payload(alert("xyz!")), "body.alerts[0].fingerprint"),
    (payload(alert(starts="yesterday")), "body.alerts[0].startsAt"),
    (payload(alert(starts="2026-11-20T12:00:00Z")), "body.alerts[0].startsAt"),  # 2 h ahead of the clock
    (payload(alert(), {**alert("ff"), "labels": {"severity": 3}}), "body.alerts[1].labels"),
    (payload(*[alert(f"{i:x}") for i in range(1001)]), "body.alerts: 1001 alerts in one payload, more than 1000"),
])
def test_a_malformed_payload_is_refused_naming_the_field(doc, named):
    with pytest.raises(InvalidInput) as caught:
        incidents_from_webhook(doc, AlertmanagerMapping(), NOW)
    assert named in str(caught.value)


def test_a_default_severity_that_is_not_one_is_refused():
    with pytest.raises(InvalidInput, match="default_severity 'urgent'"):
        AlertmanagerMapping(default_severity="urgent")


# --- through the API, both stores ---------------------------------------------------------------


def test_a_firing_critical_alert_is_an_incident_that_trips_the_critical_rule(api):
    api.gov.grant_role(OPERATOR, "dave", "on-call")
    token = api.auth("dave")
    starts = (api.gov.clock.now() - timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    doc = payload(alert("c0ffee", starts=starts, service="api"), alert("beef", status="resolved", starts=starts))
    assert api.post(PATH, json=doc).status_code == 401  # a change: it needs a token
    first = api.post(PATH, json=doc, headers=token)
    assert first.status_code == 200, first.text
    assert (first.json()["accepted"], first.json()["firing"], first.json()["resolvedIgnored"]) == (1, 1, 1)
    again = api.post(PATH, json=doc, headers=token)  # Alertmanager's repeat_interval re-send
    assert (again.json()["accepted"], again.json()["duplicate"]) == (0, 1)
    assert [i[:3] for i in incidents(api.gov.store)] == [(f"am-c0ffee-{starts}", "critical", "api")]
    deadline = time.monotonic() + 30  # bounds a failure only: a loaded machine evaluates later
    while time.monotonic() < deadline and not api.gov.breaker_events(unresolved_only=True):
        time.sleep(0.02)
    assert [e["ruleName"] for e in api.gov.breaker_events(unresolved_only=True)] == ["Critical Incident Detected"]


def test_a_bad_payload_is_a_422_and_stores_nothing(api):
    api.gov.grant_role(OPERATOR, "dave", "on-call")
    token = api.auth("dave")
    starts = api.gov.clock.now().isoformat().replace("+00:00", "Z")
    doc = payload(alert("01", starts=starts), alert("02", starts="not a time"))
    answer = api.post(PATH, json=doc, headers=token)
    assert answer.status_code == 422 and "body.alerts[1].startsAt" in answer.json()["detail"]
    bad_json = api.post(PATH, content=b"{nope", headers={**token, "Content-Type": "application/json"})
    assert bad_json.status_code == 422 and "not valid JSON" in bad_json.json()["detail"]
    assert incidents(api.gov.store) == []


# --- a real Alertmanager -------------------------------------------------------------------------

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.mark.skipif(ALERTMANAGER is None, reason="Alertmanager not installed (apt-get install prometheus-alertmanager)")
def test_a_real_alertmanager_routes_a_firing_alert_to_govcon(ready_store, tmp_path):
    url, store, tokens = ready_store
    workdir = tmp_path / "govcon"
    workdir.mkdir()
    server = ServeProcess(url, workdir).wait_ready()
    am_port, cluster_port = free_port(), free_port()
    (tmp_path / "token").write_text(tokens["dave"])
    config = tmp_path / "alertmanager.yml"
    config.write_text(f"""
route:
  receiver: govcon
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: govcon
    webhook_configs:
      - url: {server.base}{PATH}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {tmp_path / "token"}
""")
    am = subprocess.Popen([ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
                           f"--web.listen-address=127.0.0.1:{am_port}",
                           f"--cluster.listen-address=127.0.0.1:{cluster_port}"],
                          stdout=subprocess.DEVNULL, stderr=(tmp_path / "am.log").open("wb"))
    try:
        base = f"http://127.0.0.1:{am_port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("Alertmanager did not start: " + (tmp_path / "am.log").read_text()[-2000:])
        starts = datetime.now(UTC) - timedelta(seconds=5)
        posted = httpx.post(base + "/api/v2/alerts", json=[{
            "labels": {"alertname": "CheckoutDown", "severity": "critical", "service": "checkout"},
            "annotations": {"summary": "checkout is down"}, "startsAt": starts.isoformat()}], timeout=5)
        assert posted.status_code == 200, posted.text
        deadline = time.monotonic() + 30
        found = []
        while time.monotonic() < deadline and not found:
            found = [i for i in incidents(store) if i[2] == "checkout"]
            time.sleep(0.2)
        assert found and found[0][1] == "critical", (tmp_path / "am.log").read_text()[-2000:] + server.log()
        deadline = time.monotonic() + 15
        events = []
        while time.monotonic() < deadline and not events:
            events = httpx.get(server.base + "/api/circuit-breaker/events/unresolved", timeout=5).json()
            time.sleep(0.2)
        assert [e["ruleName"] for e in events] == ["Critical Incident Detected"], server.log()
    finally:
        am.terminate()
        am.wait(10)
        server.stop()
