"""The drill-down of a breaker event (engine/drilldown.py), on both stores: real trips of the default rules,
then what the answer names — the commands and incidents behind the trip, the series against the threshold,
the effect and the resolution."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from engine.clock import isoformat
from engine.drilldown import Drilldown, sparkline
from engine.errors import NotFound
from engine.governance import Governance
from storage import state_repo
from tests.conftest import OPERATOR, T0
from tests.integration.test_breakers import cmd, set_phase


@pytest.fixture(autouse=True)
def _operator_is_ops_lead(gov):
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")


def feed(gov, clock, events) -> None:
    """Each event stored when it happened (on time: judged by its stamp), breakers not judging yet."""
    quiet = Governance(gov.store, clock, evaluate_on_ingest=False)
    for e in sorted(events, key=lambda e: e["at"]):
        clock.set(datetime.fromisoformat(e["at"].replace("Z", "+00:00")))
        quiet.ingestor.ingest_objects([e])
    clock.set(T0)


def only_trip(trips, rule):
    found = [t for t in trips if t.rule_name == rule]
    assert len(found) == 1, trips
    return found[0]


def test_repeated_failures_names_the_failed_commands_and_the_pause(gov, clock):
    # 7 restart_service commands in the last 4 minutes: 3 failed (one at each of -3m, -2m, -1m), 4 succeeded;
    # and older failures outside the 5m window, which must not be named
    events = [cmd(i, "succeeded", T0 - timedelta(minutes=4)) for i in range(4)]
    events += [cmd(10 + i, "failed", T0 - timedelta(minutes=3 - i)) for i in range(3)]
    events += [cmd(90, "failed", T0 - timedelta(minutes=9))]
    events += [cmd(50, "succeeded", T0 - timedelta(minutes=2), ctype="clear_cache")]
    feed(gov, clock, events)
    trip = only_trip(gov.breakers.evaluate(), "Repeated Command Failures")
    doc = Drilldown(gov.store).show(trip.event_id)

    assert doc["id"] == trip.event_id and doc["ruleName"] == "Repeated Command Failures"
    assert doc["commandType"] == "restart_service" and doc["resolved"] is False
    assert doc["window"]["start"] == isoformat(T0 - timedelta(minutes=5)) and doc["window"]["end"] == isoformat(T0)
    assert doc["commandsAre"]["statuses"] == ["failed"] and doc["commandsAre"]["commandType"] == "restart_service"
    assert [c["id"] for c in doc["commands"]] == ["c12", "c11", "c10"]  # newest first; c90 is outside
    assert all(c["status"] == "failed" and c["type"] == "restart_service" for c in doc["commands"])
    assert doc["commandsMatching"] == 3
    s = doc["series"]
    assert s["metric"] == "commandType.failed" and s["op"] == ">=" and s["threshold"] == 3.0
    assert len(s["points"]) == 30 and s["stepSeconds"] == 10
    values = [p["value"] for p in s["points"]]
    assert values == sorted(values) and values[-1] == 3.0 and values[0] == 0.0
    assert s["points"][-1]["breached"] and not s["points"][0]["breached"]
    # 10 s steps from T0-5m: the third failure (T0-1m) lands in step 24, breached from there to the end
    assert [p["breached"] for p in s["points"]] == [False] * 24 + [True] * 6
    assert [p["value"] for p in s["points"]][11:13] == [0.0, 1.0] and s["points"][11]["at"] == isoformat(
        T0 - timedelta(minutes=3))
    assert doc["effect"]["pausedTypes"] == ["restart_service"] and doc["effect"]["stillPaused"] is True
    assert doc["resolution"] is None

    clock.set(T0 + timedelta(minutes=2))
    gov.breakers.resolve(OPERATOR, trip.event_id, note="bad image rolled back", false_positive=False)
    after = Drilldown(gov.store).show(trip.event_id)
    assert after["resolution"] == {"by": OPERATOR, "at": isoformat(T0 + timedelta(minutes=2)),
                                   "note": "bad image rolled back", "falsePositive": False}
    assert after["effect"]["stillPaused"] is False
    assert after["commands"] == doc["commands"]  # what made it trip does not change with time


def test_error_rate_series_is_null_below_min_samples_and_ends_at_the_judged_value(gov, clock):
    set_phase(gov, "L3+", ["clear_cache"])
    with gov.store.write() as conn:  # as an applied proposal records it
        state_repo.start_phase(conn, phase="L3+", at=T0 - timedelta(days=20), actor="bob", reason="approved")
    # 20 commands: 18 succeeded at -4m, 2 failed at -30s: errorRate 0.1 > 0.05; distinct types keep the
    # per-type rule quiet (1 failure each)
    events = [cmd(i, "succeeded", T0 - timedelta(minutes=4), ctype=f"t{i}") for i in range(18)]
    events += [cmd(100 + i, "failed", T0 - timedelta(seconds=30), ctype=f"f{i}") for i in range(2)]
    feed(gov, clock, events)
    trip = only_trip(gov.breakers.evaluate(), "High Error Rate")
    doc = Drilldown(gov.store).show(trip.event_id)
    s = doc["series"]
    assert s["metric"] == "errorRate" and s["kind"] == "rate" and s["minSamples"] == 10
    values = [p["value"] for p in s["points"]]
    assert values[0] is None  # nothing yet: not judged
    assert values[-1] == pytest.approx(0.1) == trip.observed["errorRate"]
    assert 0.0 in values  # 18 successes and no failure: 0 until the failures arrive
    assert sorted(c["id"] for c in doc["commands"]) == ["c100", "c101"] and doc["commandsMatching"] == 2
    assert doc["effect"]["revertedFrom"] == "L3+" and doc["effect"]["revertedAt"] == isoformat(T0)
    bars, scale, breached = sparkline(s)
    assert len(bars) == 30 and bars[0] == " " and breached[-1] and "threshold > 5.0%" in scale


def test_critical_incident_names_the_incident_and_its_command(gov, clock):
    feed(gov, clock, [
        cmd(1, "succeeded", T0 - timedelta(minutes=10), ctype="scale_up"),
        {"kind": "incident", "id": "inc-7", "severity": "critical", "command_id": "c1",
         "at": isoformat(T0 - timedelta(seconds=20))},
        {"kind": "incident", "id": "inc-8", "severity": "low", "at": isoformat(T0 - timedelta(seconds=10))},
    ])
    trip = only_trip(gov.breakers.evaluate(), "Critical Incident Detected")
    doc = Drilldown(gov.store).show(trip.event_id)
    assert [(i["id"], i["matches"], i["commandType"]) for i in doc["incidents"]] == \
        [("inc-7", True, "scale_up"), ("inc-8", False, None)]
    assert doc["commandsAre"]["namedByIncidents"] is True
    assert [(c["id"], c["status"]) for c in doc["commands"]] == [("c1", "succeeded")]  # named, 10 minutes old
    s = doc["series"]
    assert s["label"] == 'incidents with severity "critical"' and s["threshold"] == 1
    assert s["points"][-1]["value"] == 1 and s["points"][-1]["breached"]


def test_shadow_effect_and_evidence_stored_after_the_trip(gov, clock):
    gov.rules.set(OPERATOR, "Repeated Command Failures", {"shadow": True})
    feed(gov, clock, [cmd(i, "failed", T0 - timedelta(minutes=1)) for i in range(3)])
    trip = only_trip(gov.breakers.evaluate(), "Repeated Command Failures")
    clock.set(T0 + timedelta(minutes=1))  # a fourth failure, stamped inside the window but stored later
    gov.ingestor.ingest_objects([cmd(3, "failed", T0 - timedelta(seconds=30))])
    doc = Drilldown(gov.store).show(trip.event_id)
    assert doc["effect"]["shadow"] is True and doc["effect"]["summary"].startswith("shadow only: nothing changed")
    assert doc["commandsMatching"] == 3 and "c3" not in {c["id"] for c in doc["commands"]}


def test_unknown_event_is_not_found(gov):
    with pytest.raises(NotFound, match="no breaker event 'cbe-nope'"):
        Drilldown(gov.store).show("cbe-nope")


# --- the same answer through `govcon events show` and GET /api/circuit-breaker/events/{id} ----------------


@pytest.fixture
def tripped(gov, clock) -> str:
    """A Repeated Command Failures trip with an incident naming one of its failed commands."""
    events = [cmd(10 + i, "failed", T0 - timedelta(minutes=3 - i)) for i in range(3)]
    events.append({"kind": "incident", "id": "inc-1", "severity": "high", "command_id": "c11",
                   "at": isoformat(T0 - timedelta(minutes=2))})
    feed(gov, clock, events)
    return only_trip(gov.breakers.evaluate(), "Repeated Command Failures").event_id


def test_cli_events_show_text_json_and_unknown_id(cli, gov, tripped):
    text = cli("events", "show", tripped)
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0] == "Repeated Command Failures  OPEN"
    assert "condition commandType.failures >= 3 over 5m (min 10 samples for a rate)" in lines
    assert "Commands (failed restart_service in the window: 3 events)" in lines
    for c in ("c10", "c11", "c12"):
        assert any(f"  {c}  restart_service  failed  autonomous" in line for line in lines), c
    assert any("inc-1  high  names c11 (restart_service, autonomous)" in line for line in lines)
    assert "  paused restart_service (still paused)" in lines
    assert any(line.startswith("  open: resolve it with a note") for line in lines)

    js = cli("events", "show", tripped, "--json")
    assert js.code == 0
    doc = json.loads(js.out)
    assert doc == Drilldown(gov.store).show(tripped)
    # the breaker-event fields of the contract, then the drill-down's
    assert {"id", "ruleName", "timestamp", "severity", "action", "commandType", "observed", "resolved", "resolvedBy",
            "resolvedAt", "note", "falsePositive", "incidents", "commands", "series", "effect"} <= set(doc)

    missing = cli("events", "show", "cbe-missing")
    assert missing.code == 1 and missing.out == ""
    assert missing.err.strip() == "govcon: no breaker event 'cbe-missing'; `govcon events list` shows their ids"
    missing_json = cli("events", "show", "cbe-missing", "--json")
    assert missing_json.code == 1 and missing_json.out == ""


def test_api_event_drilldown(gov, tripped):
    from console.api_drilldown import EventDrilldown
    from tests.integration.test_api import make_api
    api = make_api(gov)
    with api.client:
        r = api.get(f"/api/circuit-breaker/events/{tripped}")
        assert r.status_code == 200
        assert r.json() == Drilldown(gov.store).show(tripped)
        EventDrilldown.model_validate(r.json())  # the documented response model holds
        assert api.get("/api/circuit-breaker/events/unresolved").json()[0]["id"] == tripped  # not shadowed
        gone = api.get("/api/circuit-breaker/events/cbe-missing")
        assert gone.status_code == 404 and "no breaker event 'cbe-missing'" in gone.text
        assert api.get("/api/circuit-breaker/events/a%00b").status_code == 422
        schema = api.get("/openapi.json").json()
        assert "/api/circuit-breaker/events/{event_id}" in schema["paths"]
