"""Terminal escapes that agents and operators put into stored values (command types, services, agents,
reasons, notes, operator names) print escaped in every text output of the CLI, on both stores; --json
stays valid JSON carrying the value unchanged (issue 11 pt 6)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest

from engine.clock import isoformat
from tests.conftest import OPERATOR

EVIL_TYPE = "x\x1b[2Jevil\u202e"
EVIL_REASON = "bad\x1b[31mred\rX\u202e\x07\x9b"
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> None:
    """No control character but newline and tab reached the output."""
    assert not RAW.search(text), repr(RAW.search(text).group())


@pytest.fixture
def evil(gov, cli, me, clock):
    for role in ("admin", "ops-lead", "on-call"):
        gov.grant_role(OPERATOR, me, role)
    at = isoformat(clock.now() - timedelta(seconds=30))
    gov.ingestor.ingest_objects([{"kind": "command", "id": f"f{i}", "type": EVIL_TYPE, "status": "failed",
                                  "autonomous": True, "at": at, "service": "s\x1b[5mv"} for i in range(12)])
    gov.breakers.evaluate()
    assert cli("kill-switch", "engage", "--reason", EVIL_REASON).code == 0
    return gov


def test_status_events_and_audit_show_escapes(evil, cli):
    status = cli("status")
    assert status.code == 0, status.err
    visible(status.out)
    assert "x\\x1b[2Jevil\\u202e" in status.out and "bad\\x1b[31mred\\rX\\u202e\\x07\\x9b" in status.out
    events = cli("events", "list")
    visible(events.out)
    assert "Repeated Command Failures x\\x1b[2Jevil\\u202e" in events.out
    audit = cli("audit", "list")
    visible(audit.out)
    assert "bad\\x1b[31mred\\rX\\u202e" in audit.out
    doc = cli("status", "--json").json()  # JSON: the value itself, escaped by json.dumps
    assert EVIL_TYPE in doc["pausedCommandTypes"] and doc["killSwitch"]["reason"] == EVIL_REASON
    assert "\x1b" not in cli("status", "--json").out


def test_a_resolve_note_and_the_log_lines_show_escapes(evil, cli):
    event = next(e for e in cli("events", "list", "--json").json() if e["commandType"] == EVIL_TYPE)
    r = cli("events", "resolve", event["id"], "--note", "fixed \x1b]0;title\x07 it")
    assert r.code == 0, r.err
    visible(r.out + r.err)  # the alert log lines go to stderr through the CLI's formatter
    audit = cli("audit", "list")
    visible(audit.out)
    assert "fixed \\x1b]0;title\\x07 it" in audit.out


def test_gate_log_and_actions_show_escapes(evil, cli, clock):
    assert cli("kill-switch", "release", "--reason", "done").code == 0
    gate = cli("gate", EVIL_TYPE, "--agent", "bot\x1b[8m")
    visible(gate.out + gate.err)
    log = cli("gate", "log")
    visible(log.out)
    assert "x\\x1b[2Jevil\\u202e" in log.out
    d = evil.gate.decide("restart_service", agent="rollback-bot", request=True, requested_by="ci")
    assert d.request_id, d
    rejected = cli("actions", "reject", d.request_id, "--reason", "no \x1b[2J way")
    assert rejected.code == 0, rejected.err
    for argv in (("actions", "list"), ("actions", "show", d.request_id)):
        r = cli(*argv)
        assert r.code == 0, r.err
        visible(r.out)
    assert "no \\x1b[2J way" in r.out  # the rejection's reason, in `actions show`
    doc = cli("actions", "show", d.request_id, "--json").json()  # stays JSON, the value itself
    assert doc["request"]["note"] == "no \x1b[2J way"


def test_tokens_list_shows_an_operator_name_escaped(evil, cli):
    assert cli("tokens", "create", "op\x1b[2J").code == 0
    listed = cli("tokens", "list")
    visible(listed.out)
    assert "op\\x1b[2J" in listed.out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_keeps_its_own_carriage_returns(gov, me, store_url, clock, monkeypatch, tmp_path, ev):
    from console import cli as cli_module
    from tests.integration.conftest import jsonl

    gov.grant_role(OPERATOR, me, "agent")
    monkeypatch.setenv("GOVCON_DATABASE_URL", store_url)
    monkeypatch.setattr(cli_module, "PROGRESS_MIN_BYTES", 1000)
    path = tmp_path / "big.jsonl"
    path.write_text(jsonl([ev.command(f"c{i}", "succeeded") for i in range(50)]))
    out, err = _Terminal(), io.StringIO()
    assert cli_module.main(["ingest", str(path)], clock=clock, out=out, err=err) == 0
    assert "\ringesting [" in err.getvalue() and "\\r" not in err.getvalue()
