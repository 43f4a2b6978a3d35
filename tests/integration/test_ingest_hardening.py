"""Ingest hardening (issue 11): conflicting resends, the optional `service`, the command hooks of both
pipelines (engine batch and the HTTP API's group commit), the line-length cap, and `govcon ingest` on
sources that are not files of events — each a clear error naming the path, never a traceback."""

from __future__ import annotations

import io
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.ingest import MAX_LINE_BYTES, Ingestor, capped_lines
from storage import tables
from tests.conftest import OPERATOR
from tests.integration.conftest import jsonl
from tests.integration.test_api import make_api


@pytest.fixture
def operator_role(gov, me):
    """Give the OS user running the tests a role in the gov fixture's store."""
    def grant(role: str = "ops-lead") -> None:
        gov.grant_role(OPERATOR, me, role)
    return grant


def stored(store, table=tables.command_events, *cols):
    cols = cols or (table.c.command_id, table.c.status, table.c.command_type, table.c.autonomous, table.c.service)
    with store.read() as conn:
        return set(conn.execute(sa.select(*cols)).all())


# --- conflicting duplicates -------------------------------------------------------------------


def test_a_resend_that_differs_is_a_conflict_not_a_duplicate(gov, ev, ingest):
    first = ingest([ev.command("c1", "failed"), ev.incident("i1", "high", "c1")])
    assert (first.accepted, first.conflict) == (2, 0)
    before = stored(gov.store)
    report = ingest([ev.command("c1", "failed"),                                 # the same: a duplicate
                     ev.command("c1", "failed", type="scale_pool"),              # another type
                     ev.command("c1", "failed", autonomous=False),               # another autonomy flag
                     {**ev.command("c1", "failed"), "service": "payments"},      # a service it had not
                     ev.incident("i1", "critical", "c1"),                        # another severity
                     ev.incident("i1", "high")])                                 # without its command
    assert (report.accepted, report.duplicate, report.rejected, report.conflict) == (0, 1, 0, 5)
    assert [(e.line, e.field, e.conflict) for e in report.errors] == [
        (2, "type", True), (3, "autonomous", True), (4, "service", True), (5, "severity", True),
        (6, "command_id", True)]
    assert report.errors[0].message.startswith(
        'conflicts with the stored command event c1/failed: type is "scale_pool" here but "restart_service" stored')
    assert report.to_json()["conflict"] == 5 and report.to_json()["errors"][0]["conflict"] is True
    assert stored(gov.store) == before  # nothing stored changed
    with gov.store.read() as conn:
        assert conn.execute(sa.select(tables.incidents.c.severity)).scalars().all() == ["high"]


def test_conflicts_inside_one_batch_keep_the_first(gov, ev, ingest):
    report = ingest([ev.command("c1", "proposed"), ev.command("c1", "proposed", type="other"),
                     ev.command("c1", "proposed")])
    assert (report.accepted, report.duplicate, report.conflict) == (1, 1, 1)
    assert [(e.line, e.field) for e in report.errors] == [(2, "type")]
    assert stored(gov.store) == {("c1", "proposed", "restart_service", True, None)}


def test_the_cli_says_conflict_and_exits_non_zero(gov, cli, operator_role, tmp_path, ev):
    operator_role()
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl([ev.command("c1", "failed"), ev.command("c1", "failed", type="other")]))
    result = cli("ingest", str(path))
    assert result.code == 1
    assert "accepted 1, duplicate 0, rejected 0" in result.out and "conflict 1:" in result.out
    assert "conflict line 2, field type: conflicts with the stored command event c1/failed" in result.err
    assert "rejected line" not in result.err
    doc = cli("ingest", "--json", str(path)).json()
    assert (doc["accepted"], doc["duplicate"], doc["conflict"]) == (0, 1, 1)


def test_http_ingest_reports_conflicts_with_409(gov, ev):
    api = make_api(gov)
    with api.client:
        headers = api.auth("alice")
        assert api.post("/api/events", json=ev.command("c1", "failed"), headers=headers).status_code == 200
        r = api.post("/api/events", json=[ev.command("c1", "failed", type="other"), ev.command("c2", "failed")],
                     headers=headers)
        assert r.status_code == 409
        doc = r.json()
        assert (doc["accepted"], doc["duplicate"], doc["rejected"], doc["conflict"]) == (1, 0, 0, 1)
        assert doc["errors"][0]["line"] == 1 and doc["errors"][0]["field"] == "type" and doc["errors"][0]["conflict"]
        assert doc["detail"].startswith("1 of 2 events conflict with stored events, the first at item 1, field type")
    assert ("c1", "failed", "restart_service", True, None) in stored(gov.store)


# --- service ------------------------------------------------------------------------------------


def test_service_is_stored_for_commands_and_incidents(gov, ev, ingest):
    report = ingest([{**ev.command("c1", "succeeded"), "service": "payments-api"}, ev.command("c2", "succeeded"),
                     {**ev.incident("i1", "low"), "service": "db"}, {**ev.command("c3", "failed"), "service": ""}])
    assert (report.accepted, report.rejected) == (3, 1)
    assert (report.errors[0].line, report.errors[0].field) == (4, "service")
    assert stored(gov.store, tables.command_events, tables.command_events.c.command_id,
                  tables.command_events.c.service) == {("c1", "payments-api"), ("c2", None)}
    assert stored(gov.store, tables.incidents, tables.incidents.c.incident_id, tables.incidents.c.service) == {
        ("i1", "db")}


def test_the_openapi_event_schema_has_service(gov):
    api = make_api(gov)
    with api.client:
        schema = api.get("/openapi.json").json()
    body = schema["paths"]["/api/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    kinds = {k["title"]: k["properties"] for k in body["oneOf"][0]["oneOf"]}
    for kind in ("CommandEvent", "IncidentEvent"):
        assert kinds[kind]["service"] == {"type": "string", "minLength": 1, "maxLength": 200}


# --- the command hooks --------------------------------------------------------------------------


class GrantCheck:
    """A small hook as grants would use it: outcomes must name a known id; records what it heard."""

    def __init__(self, known: set[str], *, fail_in_stored: bool = False) -> None:
        self.known, self.fail_in_stored = known, fail_in_stored
        self.screened: list[list[int]] = []
        self.heard: list[list[str]] = []
        self.visible_in_transaction: list[int] = []

    def screen(self, conn, rows):
        self.screened.append([n for n, _ in rows])
        return {n: ("id", f"{row['command_id']} names no grant") for n, row in rows
                if row["command_id"] not in self.known}

    def stored(self, conn, rows):
        self.heard.append(sorted(r["command_id"] for r in rows))
        t = tables.command_events  # the rows are there, in this same transaction
        self.visible_in_transaction.append(conn.execute(
            sa.select(sa.func.count()).select_from(t).where(t.c.command_id.in_([r["command_id"] for r in rows])))
            .scalar_one())
        if self.fail_in_stored:
            raise RuntimeError("hook failed")


def test_a_hook_rejects_lines_in_the_engine_pipeline(gov, ev):
    hook = GrantCheck({"g1", "g2"})
    gov.ingestor.command_hooks.append(hook)
    report = gov.ingestor.ingest_lines(jsonl([ev.command("g1", "succeeded"), ev.incident("i1", "low"),
                                              ev.command("stray", "failed"), ev.command("g2", "failed")])
                                       .splitlines(keepends=True))
    assert (report.accepted, report.rejected) == (3, 1)
    assert [(e.line, e.field, e.message) for e in report.errors] == [(3, "id", "stray names no grant")]
    assert hook.screened == [[1, 3, 4]]  # command lines only, by line number
    assert hook.heard == [["g1", "g2"]] and hook.visible_in_transaction == [2]
    assert {k for k, *_ in stored(gov.store)} == {"g1", "g2"}
    again = gov.ingestor.ingest_objects([ev.command("g1", "succeeded")])  # a duplicate: not stored now
    assert again.duplicate == 1 and hook.heard == [["g1", "g2"]]


def test_a_hook_that_fails_after_the_insert_stores_nothing_of_the_batch(gov, ev):
    gov.ingestor.command_hooks.append(GrantCheck({"g1"}, fail_in_stored=True))
    with pytest.raises(RuntimeError, match="hook failed"):
        gov.ingestor.ingest_objects([ev.command("g1", "succeeded"), ev.incident("i1", "low")])
    assert stored(gov.store) == set()
    assert stored(gov.store, tables.incidents, tables.incidents.c.incident_id) == set()


def test_a_hook_rejects_lines_in_the_http_group_commit(gov, ev):
    hook = GrantCheck({"g1"})
    api = make_api(gov)
    gov.ingestor.command_hooks.append(hook)
    with api.client:
        headers = {**api.auth("alice"), "Content-Type": "application/x-ndjson"}
        body = jsonl([ev.command("g1", "succeeded"), ev.command("stray", "failed")])
        r = api.post("/api/events", content="\n" + body, headers=headers)  # a blank first line: numbers hold
        assert r.status_code == 422
        doc = r.json()
        assert (doc["accepted"], doc["rejected"]) == (1, 1)
        assert doc["errors"] == [{"line": 3, "field": "id", "message": "stray names no grant"}]
        assert "the first at line 3, field id: stray names no grant" in doc["detail"]
        # an array bigger than the batch is stored alone, batch by batch: the same hook, the same numbers
        gov.ingestor.batch_size = 2
        big = api.post("/api/events", json=[ev.command("g1", "failed"), ev.command("x", "failed"),
                                            ev.command("g1", "rolled_back")], headers=api.auth("alice"))
        assert big.status_code == 422 and big.json()["errors"][0]["line"] == 2
    assert hook.heard == [["g1"], ["g1"], ["g1"]]
    assert {(k, s) for k, s, *_ in stored(gov.store)} == {("g1", "succeeded"), ("g1", "failed"),
                                                          ("g1", "rolled_back")}


# --- the line-length cap ------------------------------------------------------------------------


class Recording(io.BytesIO):
    """Counts the most bytes one read could hand back."""

    largest = 0

    def readline(self, size=-1):
        line = super().readline(size)
        self.largest = max(self.largest, len(line))
        return line


def test_an_overlong_line_is_rejected_by_number_without_being_held(gov, ev):
    good = json.dumps(ev.command("c1", "succeeded")).encode()
    stream = Recording(good + b"\n" + b"0" * (5 * MAX_LINE_BYTES + 17) + b"\n" + good.replace(b"c1", b"c2"))
    report = gov.ingestor.ingest_lines(stream)
    assert (report.accepted, report.rejected) == (2, 1)
    assert report.errors[0].line == 2
    assert f"is {5 * MAX_LINE_BYTES + 18:,} bytes, over the limit of {MAX_LINE_BYTES:,}" in report.errors[0].message
    assert stream.largest <= MAX_LINE_BYTES + 1  # never more than the cap in memory at once


def test_a_line_just_at_the_cap_is_read():
    line = b"x" * MAX_LINE_BYTES
    assert list(capped_lines(io.BytesIO(line + b"\n" + line))) == [line + b"\n", line]


def test_http_ingest_caps_lines_and_single_events(gov, ev):
    api = make_api(gov)
    with api.client:
        headers = {**api.auth("alice"), "Content-Type": "application/x-ndjson"}
        long_line = json.dumps({**ev.command("c9", "failed"), "pad": "x" * MAX_LINE_BYTES})
        r = api.post("/api/events", content=jsonl([ev.command("c1", "failed"), long_line]), headers=headers)
        assert r.status_code == 422 and r.json()["accepted"] == 1
        assert r.json()["errors"][0]["line"] == 2 and "over the limit of 65,536 bytes" in r.json()["errors"][0]["message"]
        one = api.post("/api/events", content=long_line, headers={**headers, "Content-Type": "application/json"})
        assert one.status_code == 422 and one.json()["errors"][0]["line"] == 1
    assert {k for k, *_ in stored(gov.store)} == {"c1"}


# --- `govcon ingest` on what is not a file of events --------------------------------------------


def test_ingest_of_a_directory(cli, operator_role, tmp_path):
    operator_role()
    result = cli("ingest", str(tmp_path))
    assert result.code == 2
    assert result.err == f"govcon: {tmp_path}: is a directory, not a file of events (JSON Lines)\n"


def test_ingest_of_dev_zero_is_refused_before_reading(cli, operator_role):
    operator_role()
    result = cli("ingest", "/dev/zero")
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.startswith("govcon: /dev/zero: is a device, not a file of events")
    assert result.err.count("\n") == 1


def test_ingest_of_dev_zero_on_stdin_is_refused(cli, operator_role, monkeypatch):
    operator_role()
    with open("/dev/zero", "rb") as zero:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(zero))
        result = cli("ingest", "-")
    assert result.code == 2 and result.err.startswith("govcon: standard input: is a device")


def _unreadable(tmp_path: Path) -> str:
    if os.geteuid() != 0:
        path = tmp_path / "secret.jsonl"
        path.write_text("{}\n")
        path.chmod(0)
        return str(path)
    path = "/proc/sys/vm/compact_memory"  # write-only even for root (procfs checks the mode itself)
    try:
        open(path, "rb").close()
    except PermissionError:
        return path
    pytest.skip("no file here that this (root) process cannot read")


def test_ingest_of_an_unreadable_file(cli, operator_role, tmp_path):
    operator_role()
    path = _unreadable(tmp_path)
    result = cli("ingest", path)
    assert result.code == 2
    assert result.err == f"govcon: {path}: permission denied: cannot read it\n"


def test_ingest_of_a_missing_file_names_it(cli, operator_role, tmp_path):
    operator_role()
    result = cli("ingest", str(tmp_path / "nope.jsonl"))
    assert result.err == f"govcon: {tmp_path / 'nope.jsonl'}: no such file\n"


def test_ingest_from_a_pipe(gov, cli, operator_role, ev, tmp_path):
    operator_role()
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    import threading

    def write():
        with open(fifo, "w") as f:
            f.write(jsonl([ev.command("p1", "succeeded")]))
    writer = threading.Thread(target=write)
    writer.start()
    result = cli("ingest", str(fifo))
    writer.join(5)
    assert result.code == 0 and "accepted 1" in result.out


def test_a_batch_size_below_the_lines_still_reports_every_conflict(gov, ev):
    ingestor = Ingestor(gov.store, gov.clock, batch_size=2)
    ingestor.ingest_objects([ev.command(f"c{i}", "failed") for i in range(5)])
    report = ingestor.ingest_objects([ev.command(f"c{i}", "failed", at=ev.base + timedelta(seconds=1),
                                                 type="t" if i % 2 else "restart_service") for i in range(5)])
    assert (report.duplicate, report.conflict) == (3, 2)
    assert [e.line for e in report.errors] == [2, 4]
