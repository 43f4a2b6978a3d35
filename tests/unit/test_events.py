"""Event validation (engine/events.py): each bad field is named, good events become rows."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import events
from engine.events import EventError, EventTiming, parse_event, parse_timestamp

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
AT = "2026-11-20T10:00:00Z"


def cmd(**over):
    doc = {"kind": "command", "id": "cmd-1", "type": "restart_service", "status": "failed",
           "autonomous": True, "at": AT}
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not ...}


def refused(obj) -> EventError:
    with pytest.raises(EventError) as info:
        parse_event(obj, NOW)
    return info.value


def test_command_becomes_a_row_in_utc():
    parsed = parse_event(cmd(at="2026-11-20T11:00:00+01:00"), NOW)
    assert parsed.kind == "command"
    assert parsed.row == {"command_id": "cmd-1", "command_type": "restart_service", "status": "failed",
                          "autonomous": True, "service": None,
                          "at": datetime(2026, 11, 20, 10, 0, tzinfo=UTC), "ingested_at": NOW,
                          "judged_on_arrival": False}  # two hours after its at: backfill, not late


def test_autonomous_defaults_to_false():
    assert parse_event(cmd(autonomous=...), NOW).row["autonomous"] is False


@pytest.mark.parametrize("obj, field, words", [
    ([1, 2], "event", "JSON object"),
    ({"id": "x"}, "kind", "missing"),
    (cmd(kind="telemetry"), "kind", "unknown kind 'telemetry'"),
    (cmd(status="exploded"), "status", "unknown status 'exploded'"),
    (cmd(status=...), "status", "missing"),
    (cmd(id=...), "id", "missing"),
    (cmd(id=""), "id", "non-empty string"),
    (cmd(id=42), "id", "non-empty string"),
    (cmd(id="x" * 201), "id", "longer than 200"),
    (cmd(type=...), "type", "missing"),
    (cmd(at=...), "at", "missing"),
    (cmd(at="yesterday"), "at", "not an ISO 8601 timestamp"),
    (cmd(at="2026-11-20T10:00:00"), "at", "no time zone"),
    (cmd(at=1763632800), "at", "ISO 8601 timestamp string"),
    (cmd(autonomous="yes"), "autonomous", "true or false"),
    ({"kind": "incident", "id": "i", "severity": "catastrophic", "at": AT}, "severity", "unknown severity"),
    ({"kind": "incident", "id": "i", "at": AT}, "severity", "missing"),
    ({"kind": "safety", "type": "meltdown", "at": AT}, "type", "unknown type 'meltdown'"),
    ({"kind": "eval_coverage", "covered": 5, "at": AT}, "total", "missing"),
    ({"kind": "eval_coverage", "covered": 6, "total": 5, "at": AT}, "covered", "more than total"),
    ({"kind": "eval_coverage", "covered": 0, "total": 0, "at": AT}, "total", "at least 1"),
    ({"kind": "eval_coverage", "covered": -1, "total": 5, "at": AT}, "covered", "whole number"),
    ({"kind": "eval_coverage", "covered": True, "total": 5, "at": AT}, "covered", "whole number"),
    ({"kind": "eval_coverage", "covered": 4.5, "total": 5, "at": AT}, "covered", "whole number"),
    ({"kind": "eval_coverage", "covered": 1, "total": 2**31, "at": AT}, "total", "too large"),
    (cmd(id="a\x00b"), "id", "NUL character"),
    (cmd(type="restart\ud800"), "type", "lone surrogate"),
    (cmd(at="0001-01-01T00:00:00+01:00"), "at", "out of range"),
    (cmd(at="1999-12-31T23:59:59Z"), "at", "before 2000"),
    (cmd(at="0001-01-01T00:00:00Z"), "at", "before 2000"),
    (cmd(at="9999-12-31T23:59:59Z"), "at", "ahead of the store's clock"),
    (cmd(service=""), "service", "non-empty string"),
    (cmd(service=7), "service", "non-empty string"),
    (cmd(service="s" * 201), "service", "longer than 200"),
    (cmd(service="a\x00b"), "service", "NUL character"),
    ({"kind": "incident", "id": "i", "severity": "high", "service": ["x"], "at": AT}, "service", "non-empty"),
])
def test_bad_event_names_the_field(obj, field, words):
    err = refused(obj)
    assert err.field == field
    assert words in err.message
    assert str(err).startswith(f"{field}: ")


def test_unknown_choices_list_the_allowed_values():
    assert "proposed, approved, rejected, succeeded, failed, rolled_back" in refused(cmd(status="x")).message
    assert "command, incident, safety, eval_coverage" in refused(cmd(kind="x")).message


def test_incident_without_command_is_fine():
    row = parse_event({"kind": "incident", "id": "inc-1", "severity": "critical", "at": AT}, NOW).row
    assert row["command_id"] is None and row["severity"] == "critical"


def test_safety_and_coverage_keys_default_to_type_and_time():
    s = parse_event({"kind": "safety", "type": "emergency_abort", "at": AT}, NOW).row
    assert s["event_key"] == "emergency_abort@2026-11-20T10:00:00+00:00"
    s2 = parse_event({"kind": "safety", "type": "emergency_abort", "at": AT, "id": "s-9"}, NOW).row
    assert s2["event_key"] == "s-9"
    c = parse_event({"kind": "eval_coverage", "covered": 45, "total": 50, "at": AT}, NOW).row
    assert (c["covered"], c["total"], c["event_key"]) == (45, 50, "eval_coverage@2026-11-20T10:00:00+00:00")


def test_parse_timestamp_accepts_z_and_offsets():
    assert parse_timestamp("2026-11-20T10:00:00Z") == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert parse_timestamp("2026-11-20T05:00:00-05:00") == datetime(2026, 11, 20, 10, tzinfo=UTC)
    with pytest.raises(EventError, match="no time zone"):
        parse_timestamp("2026-11-20")


def test_an_event_ahead_of_the_store_clock_is_refused_beyond_the_skew():
    five_min = "2026-11-20T12:05:00Z"  # NOW + 5 min: the default skew, still accepted
    assert parse_event(cmd(at=five_min), NOW).row["at"] == datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
    err = refused(cmd(at="2026-11-20T13:00:00Z"))
    assert err.field == "at"
    assert err.message == ("2026-11-20T13:00:00Z is 1 h ahead of the store's clock (2026-11-20T12:00:00Z); "
                           "at most 5 min ahead is accepted ([ingest] max_clock_skew)")
    err = refused({"kind": "incident", "id": "i", "severity": "critical", "at": "2026-11-20T12:05:01Z"})
    assert (err.field, "5 min 1 s ahead") == ("at", err.message.split(" is ")[1].split(" of")[0])


def test_the_skew_is_configurable():
    tight = EventTiming(max_clock_skew=timedelta(seconds=30))
    with pytest.raises(EventError, match="1 min ahead .* at most 30 s ahead"):
        parse_event(cmd(at="2026-11-20T12:01:00Z"), NOW, tight)
    assert parse_event(cmd(at="2026-11-20T12:00:30Z"), NOW, tight).row["at"].second == 30
    with pytest.raises(ValueError, match="must not be negative"):
        EventTiming(late_horizon=timedelta(seconds=-1))


def test_service_is_optional_on_commands_and_incidents():
    assert parse_event(cmd(service="payments-api"), NOW).row["service"] == "payments-api"
    inc = parse_event({"kind": "incident", "id": "i", "severity": "high", "service": "db", "at": AT}, NOW).row
    assert inc["service"] == "db"
    assert parse_event({"kind": "incident", "id": "i", "severity": "high", "at": AT}, NOW).row["service"] is None


@pytest.mark.parametrize("age, late", [(timedelta(0), False), (timedelta(seconds=5), False),
                                       (timedelta(seconds=6), True), (timedelta(minutes=59), True),
                                       (timedelta(hours=1), True), (timedelta(hours=1, seconds=1), False),
                                       (timedelta(seconds=-5), False), (timedelta(minutes=-3), True)])
def test_whether_breakers_judge_the_arrival_is_decided_as_the_event_arrives(age, late):
    at = (NOW - age).isoformat()
    for obj in (cmd(at=at), {"kind": "incident", "id": "i", "severity": "low", "at": at},
                {"kind": "safety", "type": "emergency_abort", "at": at}):
        assert parse_event(obj, NOW).row["judged_on_arrival"] is late
    assert "judged_on_arrival" not in parse_event({"kind": "eval_coverage", "covered": 1, "total": 2, "at": at}, NOW).row
    tight = EventTiming(late_horizon=timedelta(minutes=10))
    assert parse_event(cmd(at=(NOW - timedelta(minutes=11)).isoformat()), NOW, tight).row["judged_on_arrival"] is False


_ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.lists(st.integers(), max_size=2),
    st.text(max_size=5), st.text(alphabet=st.sampled_from(" \t\n\x00a\u00e9\ud800\u3000"), max_size=4),
    st.builds(lambda n, c: c * n, st.integers(min_value=195, max_value=205), st.sampled_from("a é")))


@given(value=_ANY_VALUE, required=st.booleans())
def test_the_fast_text_check_agrees_with_the_full_one(value, required):
    """``_text``'s common-case shortcut (ASCII, in length, no NUL, not blank) lets through exactly what the
    full check does, and everything else gets the full check's own error."""
    def outcome(check):
        try:
            return ("ok", check())
        except events.EventError as exc:
            return ("error", str(exc))
    assert outcome(lambda: events._text({"f": value}, "f", required=required)) == \
        outcome(lambda: events._checked_text(value, "f", required))
