"""Client mode as real OS users (issue 13 pt 1, the attacker test): a real `govcon serve --socket` whose
socket's group holds two operators; alice holds on-call, mallory holds no role. Each caller is who the kernel
says (SO_PEERCRED), whatever the client sends; mallory, with the socket but not the store file, cannot grant
himself anything, cannot read or write the store, and is refused with the role named; files named on the
command line are opened with the caller's rights, never the service's.

Needs root (useradd, runuser); tests/multiuser.py builds the users and a venv every user can run once per
machine, cached under /tmp.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

from tests import multiuser
from tests.integration.test_server_mode import Side, shared_dir

pytestmark = pytest.mark.skipif(multiuser.skip_reason() is not None, reason=multiuser.skip_reason() or "")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    users = multiuser.users()
    base = shared_dir(tmp_path_factory, "server-users")
    side = Side(base / "svc", socket=True, group=users.group)
    assert side.run("roles", "grant", users.alice, "on-call").returncode == 0
    assert side.run("roles", "grant", "root", "ops-lead").returncode == 0
    yield users, side
    side.serve.stop()


def as_user(world, user: str, *args: str, input: bytes | None = None):
    users, side = world
    env = {"GOVCON_SERVER": f"unix://{side.sock}", "GOVCON_CONFIG": "/dev/null", "TZ": "UTC"}
    return users.govcon(user, list(args), env, input=input)


def text(res) -> tuple[int, str, str]:
    return res.returncode, res.stdout.decode(), res.stderr.decode()


def test_the_socket_and_the_store_as_the_service_leaves_them(world):
    users, side = world
    import grp
    st = side.sock.stat()
    assert st.st_mode & 0o777 == 0o660 and grp.getgrgid(st.st_gid).gr_name == users.group
    assert side.db.stat().st_mode & 0o777 == 0o600


def test_the_caller_is_the_os_user_the_kernel_reports(world):
    users, side = world
    code, out, err = text(as_user(world, users.alice, "kill-switch", "engage", "--reason", "alice's drill"))
    assert code == 0, err
    code, out, err = text(as_user(world, users.alice, "status", "--json"))
    assert code == 0, err
    assert json.loads(out)["killSwitch"]["by"] == users.alice
    code, out, err = text(as_user(world, users.alice, "kill-switch", "release", "--reason", "over"))
    assert code == 5 and "releasing the kill switch needs one of the roles incident-commander, ops-lead" in err
    assert f"{users.alice} holds on-call" in err
    assert side.run("kill-switch", "release", "--reason", "over").returncode == 0
    entries = json.loads(side.run("audit", "list", "--limit", "2", "--json").stdout)
    assert [(e["actor"], e["action"]) for e in entries] == [("root", "kill_switch.release"),
                                                            (users.alice, "kill_switch.engage")]


def test_a_user_without_a_role_gets_nothing_and_is_told_which_role(world):
    users, side = world
    m = users.mallory
    code, out, err = text(as_user(world, m, "roles", "grant", m, "admin"))
    assert (code, out) == (5, "")
    assert f"granting and revoking roles needs the role admin; {m} holds no role" in err
    code, out, err = text(as_user(world, m, "status"))
    assert (code, out) == (5, "")
    assert "reading the governance store through the govcon service needs a role (any of" in err
    assert f"{m} holds no role" in err
    code, out, err = text(as_user(world, m, "kill-switch", "engage", "--reason", "mine now"))
    assert code == 5 and "engaging the kill switch needs one of the roles on-call, incident-commander, ops-lead" in err
    event = json.dumps({"kind": "command", "id": "evil", "type": "x", "status": "succeeded", "autonomous": True,
                        "at": "2026-12-01T00:00:00Z"}) + "\n"
    code, out, err = text(as_user(world, m, "ingest", "-", input=event.encode()))
    assert code == 5 and "ingesting events needs a role" in err
    code, out, err = text(as_user(world, m, "gate", "restart_service"))
    assert code == 5 and "asking the gate through the govcon service needs a role" in err
    code, out, err = text(as_user(world, m, "tokens", "create", m))
    assert code == 5 and "creating and revoking API tokens needs the role admin" in err

    # the store file itself: neither the CLI embedded on it nor sqlite3 can open it
    env = {"GOVCON_DATABASE_URL": side.url, "GOVCON_CONFIG": "/dev/null"}
    code, out, err = text(users.govcon(m, ["roles", "grant", m, "admin"], env))
    assert code != 0 and "granted" not in out
    probe = users.run(m, [str(users.python), "-c", f"import sqlite3; sqlite3.connect({str(side.db)!r})"
                                                   ".execute('select 1 from governance_state').fetchall()"], {})
    assert probe.returncode != 0 and b"unable to open database file" in probe.stderr

    # nothing changed: no role, no token, no event, and the audit names nobody but root and alice
    grants = json.loads(side.run("roles", "list", "--json").stdout)
    assert m not in {g["operator"] for g in grants}
    with sqlite3.connect(side.db) as db:
        assert db.execute("select count(*) from api_tokens").fetchone()[0] == 0
        assert db.execute("select count(*) from command_events where command_id = 'evil'").fetchone()[0] == 0
    actors = {e["actor"] for e in json.loads(side.run("audit", "list", "--limit", "100", "--json").stdout)}
    assert m not in actors


def test_a_forged_actor_is_overwritten_and_unknown_calls_refused(world):
    """mallory speaks the protocol himself: names root as the actor, calls what the CLI never would."""
    users, side = world
    script = textwrap.dedent(f"""
        import json
        from console.client import RemoteGovernance
        gov = RemoteGovernance("unix://{side.sock}")
        out = {{}}
        for name, call in [
            ("grant", lambda: gov.grant_role("root", "{users.mallory}", "admin")),
            ("grant_kw", lambda: gov.call("grant_role", "root", "{users.mallory}", "admin")),
            ("prune_system", lambda: gov.call("prune", "root", {{"$td": 864000}}, system=True)),
            ("cycle_system", lambda: gov.call("cycle.run", "root", system=True)),
            ("store", lambda: gov.call("store.engine.dispose")),
            ("private", lambda: gov.call("_enqueue_alert", None, None, False)),
            ("ingest_batch", lambda: gov.call("ingestor.store_groups", [[[1, {{}}]]])),
            ("gate_as_root", lambda: gov.call("gate.decide", "x", requested_by="root", request=True)),
        ]:
            try:
                out[name] = ["ok", repr(call())]
            except Exception as exc:
                out[name] = [type(exc).__name__, str(exc)]
        print(json.dumps(out))
    """)
    res = users.run(users.mallory, [str(users.python), "-c", script], {"GOVCON_CONFIG": "/dev/null"})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["grant"][0] == "PermissionDenied" and f"{users.mallory} holds no role" in out["grant"][1]
    assert out["grant_kw"][0] == "PermissionDenied"
    assert out["prune_system"] == ["InvalidInput", "prune: unexpected argument system"]
    assert out["cycle_system"] == ["InvalidInput", "cycle.run: unexpected argument system"]
    for name in ("store", "private", "ingest_batch"):
        assert out[name][0] == "InvalidInput" and "offers no method" in out[name][1], out
    assert out["gate_as_root"][0] == "PermissionDenied" and users.mallory in out["gate_as_root"][1]


def test_files_are_opened_with_the_callers_rights(world, tmp_path_factory):
    users, side = world
    secret_dir = shared_dir(tmp_path_factory, "root-only")
    secret = secret_dir / "events.jsonl"
    secret.write_text(json.dumps({"kind": "command", "id": "root-only", "type": "x", "status": "succeeded",
                                  "autonomous": True, "at": "2026-12-01T00:00:00Z"}) + "\n")
    secret.chmod(0o600)  # root's: the service (root here) could read it, alice cannot
    code, out, err = text(as_user(world, users.alice, "ingest", str(secret)))
    assert code != 0 and "ermission denied" in err, err
    with sqlite3.connect(side.db) as db:
        assert db.execute("select count(*) from command_events where command_id = 'root-only'").fetchone()[0] == 0

    code, out, err = text(as_user(world, users.alice, "db", "backup", "/tmp/never-alice.sqlite"))
    assert code == 5 and "backing up the store through the govcon service needs the role admin" in err
    assert side.run("roles", "grant", users.alice, "admin").returncode == 0
    try:
        code, out, err = text(as_user(world, users.alice, "db", "backup", str(secret_dir / "copy.sqlite")))
        assert code == 1 and "not writable" in err  # root's directory: the service could, alice cannot
        assert not (secret_dir / "copy.sqlite").exists()
        mine = shared_dir(tmp_path_factory, "alice-own")
        import os
        import pwd
        os.chown(mine, pwd.getpwnam(users.alice).pw_uid, -1)
        code, out, err = text(as_user(world, users.alice, "db", "backup", str(mine / "copy.sqlite")))
        assert code == 0, err
        assert (mine / "copy.sqlite").stat().st_uid == pwd.getpwnam(users.alice).pw_uid  # written by alice
    finally:
        assert side.run("roles", "revoke", users.alice, "admin").returncode == 0


def test_a_user_outside_the_sockets_group_cannot_connect(world):
    users, side = world
    code, out, err = text(users.govcon("nobody", ["status"], {"GOVCON_SERVER": f"unix://{side.sock}",
                                                              "GOVCON_CONFIG": "/dev/null"}))
    assert code == 1 and "Permission denied" in err and "membership of the socket's group" in err
