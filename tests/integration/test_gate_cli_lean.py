"""`govcon gate` in client mode takes the lean path (console/gate_cli.py, issue 16 "lean hot paths"):
against a real `govcon serve --socket`, the real command in a subprocess prints the same output with the
same exit code as the full CLI (console/cli.py's `gate`) for allows, needs_approval (with and without
--request), denials, names that are not names, --json and an unreachable service; and it imports none of
SQLAlchemy, Textual, FastAPI, the engine's deciding modules or the full CLI (checked with -X importtime).
What the lean path does not handle (gate log, --explain, --wait, a config file, embedded mode) goes to the
full CLI, whose output is the contract's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from console import gate_cli
from engine.gate import EXIT_CODES
from storage import state_repo
from storage.store import Store
from tests.serve_process import ROOT, ServeProcess

POLICY = '[policies.service_restart]\ncommand_types = ["restart_service"]\nconfidence_threshold = 0.8\n'
FULL_CLI = "import sys; from console.cli import main; sys.exit(main())"
#: modules a gate ask in client mode must not import (each one is tens of milliseconds of start-up)
HEAVY = ("sqlalchemy", "textual", "fastapi", "starlette", "pydantic", "uvicorn", "httpx", "rich", "alembic",
         "apscheduler", "psycopg", "engine.gate", "engine.governance", "storage", "console.cli", "console.config",
         "tomllib", "logging", "argparse")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lean-gate")
    db = tmp / "governance.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVCON_")}
    env.update(GOVCON_DATABASE_URL=str(db), GOVCON_CONFIG=str(tmp / "policy.toml"), TZ="UTC", LC_ALL="C.UTF-8")
    (tmp / "policy.toml").write_text(POLICY)
    subprocess.run([sys.executable, "-m", "console", "db", "init"], cwd=ROOT, env=env, check=True, capture_output=True)
    store = Store(str(db))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"])
    store.dispose()
    sock = tmp / "govcon.sock"
    serve = ServeProcess(str(db), tmp, extra_args=("--socket", str(sock)), config=POLICY).wait_ready()
    client_env = {k: v for k, v in env.items() if not k.startswith("GOVCON_")}
    client_env.update(GOVCON_SERVER=f"unix://{sock}", GOVCON_CONFIG=str(tmp / "absent.toml"),
                      GOVCON_DATABASE_URL=str(tmp / "no-such-dir" / "never.db"))
    yield client_env
    assert serve.stop() == 0


def lean(args: list[str], env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *extra, "-m", "console", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def full(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FULL_CLI, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def normalise(text: str) -> str:
    text = re.sub(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?", "<T>", text)
    return re.sub(r"\b(grt|gr|rq|req)[-_][0-9a-zA-Z_-]+", r"\1-<ID>", text)


ASKS = [
    ["gate", "restart_service", "--confidence", "0.95"],  # allow, with a grant
    ["gate", "restart_service", "--confidence=0.95", "--json", "--service", "web"],
    ["gate", "restart_service", "--confidence", "0.5"],  # needs_approval: under the policy's threshold
    ["gate", "restart_service", "--confidence", "0.5", "--request", "--json"],  # queued for a human
    ["gate", "restart_service", "--request", "--agent", "bot-7", "--action-class", "service_restart"],
    ["gate", "scale_pool"],  # deny: not whitelisted
    ["gate", "scale_pool", "--json"],
    ["gate", "bad\x1b[2Jname"],  # not a name: the reason shows it escaped
    ["gate", "restart_service", "--service", "a b"],
]


@pytest.mark.parametrize("args", ASKS, ids=lambda a: " ".join(a[1:]).encode("unicode_escape").decode())
def test_the_lean_path_answers_as_the_full_cli(service, args):
    assert gate_cli.parse(args[1:]) is not None  # these are the lean path's
    got, want = lean(args, service), full(args, service)
    assert (got.returncode, normalise(got.stdout), got.stderr) == (want.returncode, normalise(want.stdout),
                                                                   want.stderr)
    assert got.returncode in (0, 3, 4) and got.stdout


def test_an_unreachable_service_is_a_deny_on_both_paths(service, tmp_path):
    env = {**service, "GOVCON_SERVER": f"unix://{tmp_path}/nobody.sock"}
    for args in (["gate", "restart_service"], ["gate", "restart_service", "--json"]):
        got, want = lean(args, env), full(args, env)
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
        assert got.returncode == 4 and "cannot reach the govcon service" in got.stdout


def test_a_gate_ask_in_client_mode_imports_nothing_heavy(service):
    res = lean(["gate", "restart_service", "--confidence", "0.95"], service, "-X", "importtime")
    assert res.returncode == 0 and res.stdout.startswith("allow: "), res.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "console.gate_cli" in imported and "console.rpc" in imported
    heavy = sorted(m for m in imported for h in HEAVY if m == h or m.startswith(h + "."))
    assert heavy == []


@pytest.mark.parametrize("argv", [
    ["log"], ["restart_service", "--explain"], ["restart_service", "--request", "--wait", "1m"], ["-h"],
    ["restart_service", "--conf", "0.9"], ["restart_service", "--confidence", "high"], [],
    ["restart_service", "scale_pool"], ["restart_service", "--confidence", "-1"], ["--", "restart_service"],
])
def test_what_the_lean_path_does_not_parse_goes_to_the_full_cli(argv):
    assert gate_cli.parse(argv) is None


def test_the_full_cli_handles_gate_log_and_a_config_file(service, tmp_path):
    # a decision of this test's own: which of the module's other asks ran on this worker before it varies
    assert lean(["gate", "restart_service", "--agent", "log-reader"], service).returncode in (0, 3)
    res = lean(["gate", "log"], service)
    assert res.returncode == 0 and "restart_service by log-reader" in res.stdout, res.stdout
    config = tmp_path / "config.toml"
    config.write_text("no_such_key = 1\n")
    res = lean(["gate", "restart_service"], {**service, "GOVCON_CONFIG": str(config)})
    assert res.returncode == 4 and "no_such_key" in res.stdout  # the full CLI's schema check, failing closed


def test_exit_codes_are_the_gates():
    assert gate_cli.EXIT_CODES == EXIT_CODES


def test_embedded_mode_is_the_full_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVCON_")}
    env.update(GOVCON_CONFIG=str(tmp_path / "absent.toml"), GOVCON_DATABASE_URL=str(Path(tmp_path) / "none.db"))
    res = lean(["gate", "restart_service"], env)
    assert res.returncode == 4 and res.stdout.startswith("deny: store unreachable, failing closed")
