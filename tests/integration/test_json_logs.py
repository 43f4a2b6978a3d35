"""JSON logs (issue 18 pt 5): one object per line from `govcon serve --log-format json` and the
scheduler, redacted like the text lines, and the file still reopened on SIGUSR1."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from console.log_format import JsonFormatter
from engine.redact import RedactingFilter
from tests.integration.test_api_e2e import ready_store  # noqa: F401 - the fixture
from tests.serve_process import ROOT, ServeProcess


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_record_is_one_redacted_object_with_its_fields():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("govcon.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("sink %s refused: Authorization: Bearer s3cr3t-value", "pager",
                    extra={"sink": "pager", "api_key": "k-123456", "attempt": 2, "when": object()})
        try:
            raise RuntimeError("boom password=hunter2")
        except RuntimeError:
            log.exception("delivery failed")
    finally:
        log.removeHandler(handler)
    first, second = lines_of(stream.getvalue())
    assert first["level"] == "WARNING" and first["logger"] == "govcon.test.json"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert first["message"].startswith("sink pager refused") and "s3cr3t-value" not in first["message"]
    assert first["sink"] == "pager" and first["attempt"] == 2 and first["api_key"] != "k-123456"
    assert first["when"].startswith("<object")  # not JSON: shown as its repr, never a crash
    assert "hunter2" not in second["exc"] and "RuntimeError" in second["exc"]


def test_serve_writes_json_lines_and_reopens_the_file_on_sigusr1(ready_store, tmp_path):
    url, _store, tokens = ready_store
    workdir = tmp_path / "svc"
    workdir.mkdir()
    server = ServeProcess(url, workdir, extra_args=("--log-format", "json")).wait_ready()
    try:
        engaged = httpx.post(server.base + "/api/kill-switch", json={"action": "engage", "reason": "INC-9 drill"},
                             headers={"Authorization": "Bearer " + tokens["dave"]}, timeout=10)
        assert engaged.status_code == 200, engaged.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "KILL SWITCH" not in server.log():
            time.sleep(0.05)
        records = lines_of(server.log())
        assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
        assert any(r["level"] == "CRITICAL" and "KILL SWITCH ENGAGED" in r["message"] for r in records), records
        assert tokens["dave"] not in server.log()
        server.log_file.rename(workdir / "governance.log.1")
        os.kill(server.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "reopened" not in server.log():
            time.sleep(0.05)
        assert [r["message"] for r in lines_of(server.log())][-1] == "SIGUSR1: log file reopened"
    finally:
        server.stop()


def test_the_scheduler_writes_json_lines(ready_store, tmp_path):
    url, _store, _tokens = ready_store
    log_file = tmp_path / "scheduler.log"
    env = dict(os.environ, GOVCON_DATABASE_URL=url, GOVCON_CONFIG=str(tmp_path / "absent.toml"))
    env.pop("GOVCON_TEST_POSTGRES_URL", None)
    done = subprocess.run([sys.executable, "-m", "console", "scheduler", "--run-for", "2", "--log-format", "json",
                           "--log-file", str(log_file)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    records = lines_of(log_file.read_text())
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)


@contextlib.contextmanager
def _logging_to(log_file: Path, *, umask: int | None = None):
    """The service's logging set up on ``log_file`` (under ``umask``), the root logger restored after."""
    from console.log_format import setup_logging
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    old = os.umask(umask) if umask is not None else None
    try:
        handler = setup_logging(str(log_file), "text")
    finally:
        if old is not None:
            os.umask(old)
    try:
        yield
    finally:
        handler.close()
        root.removeHandler(handler)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_text_log_lines_escape_control_characters(tmp_path):
    log_file = tmp_path / "serve.log"
    with _logging_to(log_file):
        logging.getLogger("govcon.alerts").error("alert for command type %s", "x\x1b[2Jy")
    text = log_file.read_text()
    assert "\x1b" not in text and "x\\x1b[2Jy" in text


def test_an_agent_cannot_be_an_approver_role():
    from engine.errors import InvalidInput
    from engine.policies import load_policies
    with pytest.raises(InvalidInput, match="approver_roles"):
        load_policies({"p": {"command_types": ["x"], "approver_roles": ["agent"]}})


def test_the_log_file_is_not_readable_by_other_users(tmp_path):
    """It names operators, alerts and kill-switch reasons; with umask 022 it was 0644 (any user of the host)."""
    log_file = tmp_path / "serve.log"
    with _logging_to(log_file, umask=0o022):
        logging.getLogger("govcon.alerts").error("KILL SWITCH ENGAGED by carol")
    assert log_file.stat().st_mode & 0o777 == 0o640 and "carol" in log_file.read_text()
