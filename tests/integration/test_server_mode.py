"""Client mode against a real `govcon serve --socket` (issue 13 pt 1): the CLI with GOVCON_SERVER gives the
same stdout, stderr and exit codes as the CLI embedding the engine on a store of its own, and never opens a
store; each caller is the OS user the kernel reports for the socket (SO_PEERCRED); files named on the
command line are read and written by the client with the client's rights.

Two stores seeded alike, each under its own real `govcon serve`: the embedded CLI works on the first
store's file, the client CLI through the second service's socket; every command runs on both and the
outputs are compared (times, ids and the store's name normalised). The tests acting as other OS users are
in test_server_mode_users.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve_process import ROOT, ServeProcess

SEED = [
    {"kind": "command", "id": f"c{i}", "type": "restart_service", "status": s, "autonomous": True,
     "at": "2026-12-01T10:00:00Z"} for i, s in enumerate(["succeeded"] * 8 + ["failed"] * 2)
] + [{"kind": "incident", "id": "inc-1", "severity": "high", "command_id": "c8", "at": "2026-12-01T10:05:00Z"},
     {"kind": "eval_coverage", "covered": 45, "total": 50, "at": "2026-12-01T10:00:00Z"}]


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVCON_")}
    env.update(GOVCON_CONFIG=str(workdir / "absent.toml"), TZ="UTC", LC_ALL="C.UTF-8", **extra)
    return env


def govcon(args: list[str], env: dict[str, str], *, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", *args], cwd=ROOT, env=env, input=input,
                          capture_output=True, text=True, timeout=120)


class Side:
    """One store under its own `govcon serve`; ``run`` is the CLI on it (embedded, or a client of it)."""

    def __init__(self, workdir: Path, *, socket: bool, group: str | None = None, url: str | None = None) -> None:
        workdir.mkdir(mode=0o755)
        workdir.chmod(0o755)  # other OS users may reach the socket; the store file itself stays 0600
        self.workdir = workdir
        self.db = workdir / "governance.db"
        self.url = url or f"sqlite:///{self.db}"
        self.sock = workdir / "govcon.sock" if socket else None
        config = None
        if url is not None:  # PostgreSQL: each side's kill-switch marker file its own
            config = f'kill_switch_marker = "{workdir / "kill-switch"}"\n'
            (workdir / "config.toml").write_text(config)
        self.config = workdir / ("config.toml" if config else "absent.toml")
        init = govcon(["db", "init", "--phase-started", "2026-09-01"], self._env(GOVCON_DATABASE_URL=self.url))
        assert init.returncode == 0, init.stderr
        seed = workdir / "seed.jsonl"
        seed.write_text("".join(json.dumps(e) + "\n" for e in SEED))
        done = govcon(["ingest", str(seed)], self._env(GOVCON_DATABASE_URL=self.url))
        assert done.returncode == 0, done.stderr
        extra: tuple[str, ...] = ()
        if socket:
            extra = ("--socket", str(self.sock))
            if group:
                extra += ("--socket-group", group)
        self.serve = ServeProcess(self.url, workdir, extra_args=extra, config=config).wait_ready()
        if socket:
            assert self.sock.is_socket(), self.serve.log()

    def _env(self, **extra: str) -> dict[str, str]:
        return {**_env(self.workdir, **extra), "GOVCON_CONFIG": str(self.config)}

    def env(self) -> dict[str, str]:
        if self.sock is None:
            return self._env(GOVCON_DATABASE_URL=self.url)
        # a store URL that cannot be opened: a client that opened a store would fail loudly
        return self._env(GOVCON_SERVER=f"unix://{self.sock}",
                         GOVCON_DATABASE_URL=str(self.workdir / "no-such-dir" / "never.db"))

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return govcon(list(args), self.env(), input=input)


def shared_dir(tmp_path_factory, name: str) -> Path:
    """A directory other OS users can reach, removed at exit. Not under pytest's base directory: pytest
    makes /tmp/pytest-of-USER 0700 again whenever another session (an xdist worker, another run) starts."""
    import atexit
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(prefix=f"govcon-{name}-", dir="/tmp"))
    base.chmod(0o755)
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return base


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    base = shared_dir(tmp_path_factory, "server-mode")
    embedded, client = Side(base / "embedded", socket=False), Side(base / "client", socket=True)
    yield embedded, client
    for side in (embedded, client):
        side.serve.stop()


_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def normalise(text: str, side: Side) -> str:
    text = text.replace(f"unix://{side.sock}", "<STORE>") if side.sock else text
    text = text.replace(side.url, "<STORE>").replace(f"sqlite:///{side.db}", "<STORE>")
    text = re.sub(r"sqlite:////\S+?governance\.db", "<STORE>", text)
    text = text.replace(str(side.workdir), "<DIR>")
    text = _TIME.sub("<T>", text)
    text = re.sub(r"\b\d\d:\d\d(:\d\d)?\b", "<HH:MM>", text)
    text = re.sub(r"serve:([\w.-]+)@([\w.-]+):\d+", r"serve:\1@\2:<PID>", text)
    text = re.sub(r"\b(grt|gr|rq|req|prop|evt|tok|rep)[-_][0-9a-zA-Z_-]+", r"\1-<ID>", text)
    text = re.sub(r"\b[0-9]+:[0-9a-f]{64}\b", "<HEAD>", text)  # audit heads (the clocks differ)
    text = re.sub(r'"hash": "[0-9a-f]{64}"', '"hash": "<H>"', text)
    text = re.sub(r"\bkey [0-9a-f]{8}\b", "key <KEYID>", text)  # each store has its own audit key
    text = re.sub(r"in \d+(\.\d+)? ?(ms|s)\b", "in <DUR>", text)
    return text


def _no_alert_log(stderr: str) -> str:
    """An alert with no sink but the log is logged by the process that raises it: the embedded CLI's own
    stderr, in client mode the service's log (where the leader delivers the rest). Not the command's output."""
    return "".join(line for line in stderr.splitlines(keepends=True)
                   if not re.match(r"govcon: (CRITICAL|ERROR|WARNING|INFO) govcon\.alerts: ", line))


def same(sides, *args: str, input_for=None) -> subprocess.CompletedProcess:
    """Run the command on both sides; same exit code, same stdout and stderr (normalised)."""
    results = []
    for side in sides:
        res = side.run(*args, input=input_for(side) if input_for else None)
        results.append((side, res))
    (e_side, e), (c_side, c) = results
    got = (c.returncode, normalise(c.stdout, c_side), normalise(_no_alert_log(c.stderr), c_side))
    want = (e.returncode, normalise(e.stdout, e_side), normalise(_no_alert_log(e.stderr), e_side))
    if got != want:
        import difflib
        diff = "\n".join(difflib.unified_diff((f"exit {want[0]}\n" + want[1] + want[2]).splitlines(),
                                               (f"exit {got[0]}\n" + got[1] + got[2]).splitlines(),
                                               "embedded", "client", lineterm=""))
        pytest.fail(f"{' '.join(args)}: the client differs from the embedded CLI:\n{diff}")
    return c


READS = [
    ("status",), ("status", "--json"), ("metrics", "--since", "30d"), ("metrics", "--json"), ("readiness",),
    ("readiness", "--json"), ("rules", "list"), ("rules", "show", "High Error Rate", "--json"),
    ("events", "list"), ("proposals", "list"), ("roles", "list"), ("roles", "list", "--json"),
    ("audit", "list", "--limit", "3"), ("agents", "list"), ("mode",), ("alerts", "list"), ("tokens", "list"),
    ("gate", "log", "--json"), ("actions", "list"),
    ("rules", "backtest", "High Error Rate", "--days", "30"),
    ("readiness", "--explain"), ("readiness", "--explain", "--json"), ("events", "show", "cbe-nope"),
    # errors: same message, same exit code
    ("proposals", "show", "prop-nope"), ("rules", "show", "No Such Rule"),
    ("metrics", "--since", "0s"), ("attest", "no-such-item", "--pass", "--evidence", "x"),
    ("rules", "add", "bad", "--condition", "errorRate >> 1", "--window", "5m", "--action", "alert_only",
     "--severity", "low"),
]


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a))
def test_reads_and_refusals_are_the_same_through_the_service(sides, args):
    same(sides, *args)


def test_changes_are_the_same_through_the_service_and_the_service_names_the_caller(sides, tmp_path):
    embedded, client = sides
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    steps = [
        ("attest", "incident-response-playbook-complete", "--pass", "--evidence", "wiki/ir"),
        ("rules", "set", "High Error Rate", "--min-samples", "12"),
        ("rules", "mode", "shadow", "--reason", "trying"),
        ("rules", "mode", "enforce", "--reason", "done"),
        ("roles", "grant", "someone", "on-call"), ("roles", "revoke", "someone", "on-call"),
        ("kill-switch", "engage", "--reason", "drill by hand"),
        ("gate", "restart_service", "--json"),  # deny: the kill switch; exit 4 on both
        ("kill-switch", "release", "--reason", "over"),
        ("revert", "--reason", "back to L3"),
        ("gate", "restart_service", "--request", "--json"),
        ("actions", "list", "--pending"),
        ("cycle",),
        ("proposals", "list"),
        ("mode", "set", "minimal", "--reason", "calm"), ("mode", "set", "normal", "--reason", "fine"),
        ("alerts", "list", "--status", "all"),
        ("audit", "list", "--limit", "20"),
        ("audit", "verify"),
        ("db", "prune", "--older-than", "400d"),
        ("run", "restart_service", "--dry-run", "--", "/bin/true"),
        ("run", "restart_service", "--wait", "0s", "--", "/bin/true"),  # L3: needs approval, nothing runs
    ]
    for step in steps:
        same(sides, *step)
    # the audit says who acted: the OS user the service saw on the socket
    entries = json.loads(client.run("audit", "list", "--limit", "30", "--json").stdout)
    assert {e["actor"] for e in entries if e["action"] != "store.init"} == {me}


def test_ingest_reads_the_file_in_the_client_and_reports_the_same(sides, tmp_path):
    lines = [json.dumps({"kind": "command", "id": f"n{i}", "type": "scale_up", "status": "succeeded",
                         "autonomous": True, "at": "2026-12-02T10:00:00Z"}) for i in range(5)]
    lines.insert(2, '{"kind": "command", "id": "bad", "status": "exploded", "at": "2026-12-02T10:00:00Z"}')
    lines.insert(4, "not json")
    lines.insert(5, "")
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = same(sides, "ingest", str(path))
    assert res.returncode == 1 and "line 3" in res.stderr and "line 5" in res.stderr
    same(sides, "ingest", str(path), "--json")  # all duplicates now, errors again
    same(sides, "ingest", "-", input_for=lambda side: "\n".join(lines[:2]) + "\n")


def test_backup_is_written_by_the_client(sides, tmp_path):
    embedded, client = sides
    target = tmp_path / "copy.sqlite"
    res = client.run("db", "backup", str(target))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"backed up unix://{client.sock} to {target} (")
    assert target.stat().st_mode & 0o777 == 0o600
    import sqlite3
    with sqlite3.connect(target) as db:
        assert db.execute("select current_phase from governance_state").fetchone()[0] == "L3"
    again = same(sides, "db", "backup", str(target))  # exists already: the same refusal
    assert again.returncode == 1
    res = client.run("db", "backup", str(tmp_path / "missing-dir" / "x.sqlite"))
    assert res.returncode == 1 and "does not exist" in res.stderr


@pytest.mark.parametrize("args", [("db", "init"), ("db", "migrate"), ("scheduler",), ("audit", "key", "init")],
                         ids=" ".join)
def test_store_commands_say_they_run_on_the_servers_host(sides, args):
    _, client = sides
    res = client.run(*args)
    assert res.returncode == 2
    assert "run it on the server's host as the service's user" in res.stderr
    assert f"client of unix://{client.sock}" in res.stderr
    assert not (client.workdir / "no-such-dir").exists()


def test_the_store_is_private_to_the_service_user(sides):
    for side in sides:
        assert side.db.stat().st_mode & 0o777 == 0o600
        for extra in ("-wal", "-shm"):
            p = Path(str(side.db) + extra)
            if p.exists():
                assert p.stat().st_mode & 0o077 == 0, p


def test_gate_fails_closed_when_the_service_is_unreachable(tmp_path):
    env = _env(tmp_path, GOVCON_SERVER=f"unix://{tmp_path}/nobody-here.sock")
    res = govcon(["gate", "restart_service"], env)
    assert res.returncode == 4
    assert res.stdout.startswith("deny: ") and "cannot reach the govcon service" in res.stdout
    res = govcon(["status"], env)
    assert res.returncode == 1 and "cannot reach the govcon service at unix://" in res.stderr


def test_https_client_mode_uses_the_tokens_operator(sides, tmp_path):
    """GOVCON_SERVER=http(s)://… with GOVCON_TOKEN: the same calls over POST /api/rpc, as the token's operator."""
    _, client = sides
    made = client.run("tokens", "create", "erin")
    assert made.returncode == 0, made.stderr
    env = _env(client.workdir, GOVCON_SERVER=client.serve.base, GOVCON_TOKEN=made.stdout.strip(),
               GOVCON_DATABASE_URL=str(client.workdir / "no-such-dir" / "never.db"))
    refused = govcon(["roles", "grant", "erin", "admin"], env)
    assert refused.returncode == 5 and "granting and revoking roles needs the role admin; erin holds no role" \
        in refused.stderr
    refused = govcon(["rules", "list"], env)
    assert refused.returncode == 5 and "reading the governance store through the govcon service needs a role" \
        in refused.stderr
    assert client.run("roles", "grant", "erin", "on-call").returncode == 0
    over_socket = client.run("rules", "list")
    over_http = govcon(["rules", "list"], env)
    assert (over_http.returncode, over_http.stdout) == (0, over_socket.stdout), over_http.stderr
    engaged = govcon(["kill-switch", "engage", "--reason", "over https"], env)
    assert engaged.returncode == 0, engaged.stderr
    assert json.loads(client.run("status", "--json").stdout)["killSwitch"]["by"] == "erin"
    assert client.run("roles", "grant", "root", "ops-lead").returncode == 0
    assert client.run("kill-switch", "release", "--reason", "done").returncode == 0
    target = tmp_path / "over-http.sqlite"
    assert client.run("roles", "grant", "erin", "admin").returncode == 0
    res = govcon(["db", "backup", str(target)], env)
    assert res.returncode == 0, res.stderr
    assert target.stat().st_size > 100_000
    bad = govcon(["status"], {**env, "GOVCON_TOKEN": "not-a-token"})
    assert bad.returncode == 1 and "refused the token" in bad.stderr


def test_govcon_run_runs_the_command_here_and_keeps_the_books_there(sides, tmp_path):
    """At L3+ with the type whitelisted on both stores, a governed run: the command runs in the client's
    process (it writes a file here), the grant and its outcome are the service's."""
    embedded, client = sides
    for side in sides:
        import sqlite3
        with sqlite3.connect(side.db) as db:  # as an approved proposal would leave it (root owns both files)
            db.execute("update governance_state set current_phase = 'L3+', command_whitelist = '[\"touch_file\"]'")
    outputs = []
    for side in sides:
        marker = tmp_path / f"ran-{side.workdir.name}"
        res = side.run("run", "touch_file", "--confidence", "0.9", "--json", "--", "/usr/bin/touch", str(marker))
        assert res.returncode == 0, res.stdout + res.stderr
        assert marker.exists()
        doc = json.loads(res.stdout)
        steps = doc["report"]["steps"]
        assert [(s["name"], s["exitCode"]) for s in steps] == [("command", 0)]
        for s in steps:
            s["durationMs"] = 0
        text = re.sub(r"\"(durationMs|totalMs|elapsedMs)\": \d+", r"\"\1\": 0", json.dumps(doc, sort_keys=True))
        outputs.append(normalise(text.replace(str(marker), "<MARKER>"), side))
    assert outputs[0] == outputs[1]
    shown = json.loads(client.run("actions", "list", "--json").stdout)
    assert any(g["commandType"] == "touch_file" and g["status"] == "succeeded" for g in shown["grants"])


def test_an_events_drill_down_is_the_same_through_the_service(sides):
    """`events show ID`: each side shows its own newest event (the ids differ between the twin stores)."""
    from datetime import UTC, datetime
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    burst = "".join(json.dumps({"kind": "command", "id": f"burst-{i}", "type": "drain_node", "status": "failed",
                                "autonomous": True, "at": at}) + "\n" for i in range(12))
    shown = []
    for side in sides:
        side.run("ingest", "-", input=burst)  # twelve failures now: High Error Rate trips on arrival
        events = [e for e in json.loads(side.run("events", "list", "--json").stdout)
                  if e["ruleName"] == "High Error Rate"]  # several rules trip at the same instant
        assert events, "the twin stores have a High Error Rate event"
        res = side.run("events", "show", events[0]["id"])
        assert res.returncode == 0, res.stderr
        shown.append(normalise(res.stdout.replace(events[0]["id"], "<EVENT>"), side))
    assert shown[0] == shown[1] and "burst-" in shown[0]  # the commands that made it trip, by id


@pytest.mark.postgres
def test_the_same_through_the_service_on_postgresql(tmp_path_factory):
    """Reads, refusals and changes on two PostgreSQL stores (schemas), embedded against the socket."""
    import uuid

    import sqlalchemy as sa

    from tests.conftest import PG_URL, _drop_schema, _postgres_schema_url
    if not PG_URL:
        pytest.skip("GOVCON_TEST_POSTGRES_URL not set (source .ci/postgres.sh && start_postgres)")
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    schemas = ["t_" + uuid.uuid4().hex[:12] for _ in range(2)]
    with admin.connect() as conn:
        for schema in schemas:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    base = shared_dir(tmp_path_factory, "server-mode-pg")
    pair = []
    try:
        pair.append(Side(base / "embedded", socket=False, url=_postgres_schema_url(schemas[0])))
        pair.append(Side(base / "client", socket=True, url=_postgres_schema_url(schemas[1])))
        for args in [("status",), ("readiness", "--json"), ("rules", "list"), ("roles", "list"),
                     ("proposals", "show", "prop-nope"), ("attest", "no-such-item", "--pass", "--evidence", "x"),
                     ("roles", "grant", "root", "on-call"), ("kill-switch", "engage", "--reason", "pg"),
                     ("gate", "restart_service", "--json"), ("kill-switch", "release", "--reason", "over"),
                     ("cycle",), ("audit", "list", "--limit", "5"), ("db", "backup", str(base / "x.sqlite"))]:
            same(pair, *args)
    finally:
        for side in pair:
            side.serve.stop()
        for schema in schemas:
            _drop_schema(admin, schema)
        admin.dispose()
