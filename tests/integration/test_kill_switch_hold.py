"""The kill switch holds when the store cannot be written (issue 11, point 3).

A marker file engages it with no database at all: every gate honours it, `status`, the API and the
console show it, `kill-switch engage` and POST /api/kill-switch fall back to it when the store write
fails (and say so), the engagement is recorded once the store takes writes again, and releasing needs
the store and the role. Alerts and "KILL SWITCH ENGAGED" log lines follow a commit that happened, never
one that failed. /health says degraded when writes fail.

The stores are made unwritable for real: a SQLite store on a full tmpfs (needs root and mount; skipped
with a message where that is not permitted), a PostgreSQL database set read-only.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.alerts import Alert, load_sinks
from engine.errors import PermissionDenied
from engine.governance import Governance
from engine.kill_marker import KillMarker, default_marker_path
from storage import audit_repo, outbox_repo, state_repo
from storage.db import StoreUnavailable
from storage.maintenance import WriteProbe
from storage.store import Store
from tests.conftest import OPERATOR, T0

MARKER_ONLY = "store not writable: engaged by marker file {path} only; it will be recorded when the store is back"


def _whitelist(gov: Governance, *types: str) -> None:
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=list(types))


def _engage_roles(gov: Governance, who: str = OPERATOR) -> None:
    for role in ("incident-commander", "on-call"):
        gov.grant_role(OPERATOR, who, role)


# --- the marker file on its own ---------------------------------------------------------------------


def test_a_marker_file_engages_every_gate_and_shows_in_status(gov, store_url, clock):
    _whitelist(gov, "restart_service")
    assert gov.gate.decide("restart_service", take_grant=False).decision == "allow"
    path = gov.kill_marker.path
    assert gov.status()["killSwitch"]["marker"] is None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()  # an empty file is enough

    decision = gov.gate.decide("restart_service")
    assert decision.decision == "deny" and f"kill switch engaged (marker file {path})" in decision.reason
    other = Governance(Store(store_url), clock)  # another process on the same store finds the same file
    try:
        assert other.kill_marker.path == path
        assert other.gate.decide("restart_service").decision == "deny"
    finally:
        other.store.dispose()
    ks = gov.status()["killSwitch"]
    assert ks["engaged"] is True and ks["marker"] == {"path": str(path), "engaged": True, "by": None, "at": None,
                                                     "reason": None}
    with gov.store.read() as conn:
        assert not state_repo.get_state(conn).kill_switch_engaged  # the store knows nothing of it yet


def test_the_marker_is_honoured_when_the_store_cannot_be_read_at_all(tmp_path, clock):
    marker = KillMarker(tmp_path / "kill-switch")
    unreachable = Governance(Store("postgresql+psycopg://nobody:x@127.0.0.1:1/none", apply_migrations=False),
                             clock, kill_marker=marker)
    assert unreachable.gate.decide("t").reason.startswith("store unreachable")
    marker.engage("carol", "INC-1 runaway", T0)
    decision = unreachable.gate.decide("t")
    assert decision.decision == "deny"
    assert decision.reason == f"kill switch engaged by carol (marker file {marker.path}): INC-1 runaway"
    ks = unreachable.kill_switch_status()
    assert ks["engaged"] and ks["by"] == "carol" and ks["storeReadable"] is False


def test_the_default_marker_paths(tmp_path):
    assert default_marker_path("sqlite", "/srv/govcon/governance.db", {}) == Path("/srv/govcon/governance.db.kill-switch")
    assert default_marker_path("postgresql", None, {"XDG_RUNTIME_DIR": "/run/user/1000"}) == \
        Path("/run/user/1000/govcon/kill-switch")
    assert default_marker_path("postgresql", None, {"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "govcon" / "kill-switch"


def test_an_unreadable_marker_still_engages_and_a_full_disk_leaves_an_empty_one(tmp_path):
    marker = KillMarker(tmp_path / "dir" / "kill-switch")
    assert marker.engaged() is None
    info, created = marker.engage("dave", "why", T0)
    assert created and (info.by, info.at, info.reason) == ("dave", T0, "why")
    again, created = marker.engage("erin", "later", T0 + timedelta(minutes=1))
    assert not created and again.by == "dave"  # the first engagement's details stay
    marker.path.write_bytes(b"\x00garbage")
    assert marker.engaged() is not None and marker.engaged().by is None
    assert marker.clear() and marker.engaged() is None and not marker.clear()


# --- stores that cannot be written --------------------------------------------------------------------


class Unwritable:
    """A governed store that can be made to refuse writes and take them again, for real."""

    def __init__(self, gov: Governance, url: str, refuse, allow) -> None:
        self.gov, self.url, self._refuse, self._allow = gov, url, refuse, allow

    def refuse(self) -> None:
        self._refuse()
        with pytest.raises(StoreUnavailable):  # really unwritable
            with self.gov.store.write() as conn:
                conn.execute(sa.insert(outbox_repo.OUTBOX).values(
                    created_at=T0, sink="probe", severity="low", kind="info", dedup_key="x" * 200,
                    payload={"pad": "x" * 200_000}, next_attempt_at=T0, status="pending", attempts=0))

    def allow(self) -> None:
        self._allow()


@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"the full-disk case needs a small tmpfs, and mount is not permitted here: "
                    f"{done.stderr.strip() or done.returncode}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={mnt / 'filler'}", "bs=64k"], capture_output=True)
    subprocess.run(["dd", "if=/dev/zero", f"of={mnt / 'filler-2'}", "bs=1k"], capture_output=True)


def _unfill(mnt: Path) -> None:
    for name in ("filler", "filler-2"):
        (mnt / name).unlink(missing_ok=True)


def _read_only(admin, db: str, on: bool, store: Store) -> None:
    with admin.connect() as conn:
        setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
        conn.execute(sa.text(f'ALTER DATABASE "{db}" {setting}'))
    store.dispose()  # new sessions take the database's default


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def unwritable(request, clock, tmp_path):
    if request.param == "sqlite":
        mnt = request.getfixturevalue("tmpfs")
        url = str(mnt / "governance.db")
        gov = Governance(Store(url), clock)
        refuse, allow = (lambda: _fill(mnt)), (lambda: _unfill(mnt))
    else:
        admin, db, url = request.getfixturevalue("own_postgres_database")
        gov = Governance(Store(url), clock, kill_marker=KillMarker(tmp_path / "run" / "kill-switch"))
        refuse = lambda: _read_only(admin, db, True, gov.store)  # noqa: E731
        allow = lambda: _read_only(admin, db, False, gov.store)  # noqa: E731
    gov.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
    _engage_roles(gov)
    yield Unwritable(gov, url, refuse, allow)
    allow()
    gov.close()


def test_engage_on_an_unwritable_store_uses_the_marker_and_the_store_records_it_once_back(unwritable, clock, caplog):
    gov = unwritable.gov
    caplog.set_level(logging.INFO, logger="govcon.alerts")
    _whitelist(gov, "restart_service")
    unwritable.refuse()

    with pytest.raises(PermissionDenied, match="on-call"):  # the store still reads: the role is checked
        gov.overrides.kill_switch("engage", "mallory", "not mine to pull")
    assert gov.kill_marker.engaged() is None

    result = gov.overrides.kill_switch("engage", OPERATOR, "INC-42 disk full")
    path = gov.kill_marker.path
    assert result.changed and result.via == "marker" and result.message.startswith(MARKER_ONLY.format(path=path))
    assert gov.gate.decide("restart_service").decision == "deny"
    assert gov.kill_switch_status()["engaged"] is True
    engaged_lines = [r.getMessage() for r in caplog.records if "KILL SWITCH ENGAGED" in r.getMessage()]
    assert len(engaged_lines) == 1 and f"by marker file {path} only" in engaged_lines[0]  # nothing claims a commit

    with pytest.raises(StoreUnavailable):  # releasing needs the store
        gov.overrides.kill_switch("release", OPERATOR, "too early")
    assert gov.kill_marker.engaged() is not None

    unwritable.allow()
    assert gov.overrides.record_marker() is True  # the scheduler's tick does this
    assert gov.overrides.record_marker() is False  # once
    with gov.store.read() as conn:
        state = state_repo.get_state(conn)
        entry = audit_repo.list_entries(conn, limit=1, search="kill_switch.engage")[0]
    assert state.kill_switch_engaged and state.kill_switch_by == OPERATOR
    assert entry.details["via"] == "marker file" and entry.details["markerFile"] == str(path)
    recorded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert trigger critical")]
    assert len(recorded) == 1 and "recorded from its marker file" in recorded[0]

    with pytest.raises(PermissionDenied, match="incident-commander"):
        gov.overrides.kill_switch("release", "mallory", "let me")
    released = gov.overrides.kill_switch("release", OPERATOR, "disk cleaned up")
    assert released.changed and "marker file removed" in released.message
    assert gov.kill_marker.engaged() is None and not gov.kill_switch_status()["engaged"]
    assert gov.gate.decide("restart_service", take_grant=False).decision == "allow"
    assert gov.audit_verify()[1] is None


def test_a_marker_engagement_is_recorded_by_the_next_kill_switch_write(unwritable):
    gov = unwritable.gov
    unwritable.refuse()
    gov.overrides.kill_switch("engage", OPERATOR, "first, by marker")
    unwritable.allow()
    again = gov.overrides.kill_switch("engage", OPERATOR, "second, in the store")
    assert not again.changed and "first, by marker" in again.message  # recorded first, so engaged already
    with gov.store.read() as conn:
        assert state_repo.get_state(conn).kill_switch_reason == "first, by marker"


def test_engage_fails_plainly_when_neither_path_can_be_written(clock, tmp_path):
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    gov = Governance(Store(str(store_dir / "governance.db")), clock,
                     kill_marker=KillMarker(tmp_path / "plain-file" / "kill-switch"))
    gov.init_store(OPERATOR)
    _engage_roles(gov)
    (tmp_path / "plain-file").write_text("a file where the marker's directory should be")
    gov.store.dispose()
    db = store_dir / "governance.db"
    aside = tmp_path / "aside"
    aside.mkdir()
    for f in store_dir.iterdir():
        f.rename(aside / f.name)
    db.mkdir()  # the store's path is a directory now: nothing can be opened
    with pytest.raises(StoreUnavailable, match="the kill switch is NOT engaged"):
        gov.overrides.kill_switch("engage", OPERATOR, "both paths blocked")


# --- after the commit, never before -------------------------------------------------------------------


def _fail_at_commit(conn) -> None:
    """Make this transaction's COMMIT fail for real (a deferred constraint), after everything else ran."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        conn.exec_driver_sql("INSERT INTO approvals (proposal_id, role, approver, at) "
                             "VALUES ('no-such-proposal', 'tech-lead', 'x', '2026-01-01 00:00:00.000000')")
    else:
        conn.exec_driver_sql("CREATE TEMP TABLE refused_at_commit (x int)")
        conn.exec_driver_sql("CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                             "$$ BEGIN RAISE EXCEPTION 'refused at COMMIT'; END $$")
        conn.exec_driver_sql("CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON refused_at_commit DEFERRABLE "
                             "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()")
        conn.exec_driver_sql("INSERT INTO refused_at_commit VALUES (1)")


def test_alert_log_lines_follow_a_commit_that_happened_never_one_that_failed(store, clock, caplog):
    from engine.notifier import Notifier
    notifier = Notifier(store, clock, load_sinks({"sinks": [{"name": "hook", "type": "webhook",
                                                              "url": "http://127.0.0.1:9/hook"}]}))
    caplog.set_level(logging.INFO, logger="govcon.alerts")

    def page(key: str) -> Alert:
        return Alert(kind="trigger", severity="critical", title=f"KILL SWITCH ENGAGED by {key}", body="b",
                     dedup_key=key, at=clock.now())

    with pytest.raises(sa.exc.DBAPIError):
        with store.write() as conn:
            assert notifier.enqueue(conn, page("k-never-committed")) == 1
            _fail_at_commit(conn)  # the statements ran; the COMMIT is refused
    assert "k-never-committed" not in caplog.text
    with store.write() as conn:  # the same pooled connection, a clean transaction: nothing left over
        notifier.enqueue(conn, page("k-committed"))
    assert "k-committed" in caplog.text and "k-never-committed" not in caplog.text
    with store.read() as conn:
        assert [r.dedup_key for r in outbox_repo.list_rows(conn)] == ["k-committed"]
    notifier.close()


# --- /health -------------------------------------------------------------------------------------------


def test_the_write_probe_says_why_writes_fail_and_recovers(unwritable):
    gov = unwritable.gov
    probe = WriteProbe(gov.store, every=0.0, remember=0.0)
    assert probe.check() is None
    unwritable.refuse()
    problem = probe.check()
    assert problem is not None and ("full" in problem or "read-only" in problem), problem
    unwritable.allow()
    assert probe.check() is None


def test_the_write_probe_remembers_a_failed_write(unwritable):
    gov = unwritable.gov
    probe = WriteProbe(gov.store, every=3600.0, remember=60.0)
    assert probe.check() is None  # probed once; the next probe is an hour away
    unwritable.refuse()            # refuse() itself tries a write, which fails
    problem = probe.check()
    assert problem is not None and problem.startswith("a write failed"), problem


# --- the whole thing on a full disk: CLI, `govcon serve`, another process's gate -----------------------


def _cli(url: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOVCON_DATABASE_URL": url, "GOVCON_CONFIG": "/nonexistent/govcon.toml"}
    return subprocess.run([sys.executable, "-m", "console", *argv], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])


def test_full_disk_engage_by_cli_and_by_serve_the_gate_denies_elsewhere_and_health_is_degraded(tmpfs, tmp_path):
    import httpx

    from console.identity import current_operator
    from engine.clock import SystemClock
    from tests.serve_process import ServeProcess

    url = str(tmpfs / "governance.db")
    gov = Governance(Store(url), SystemClock())
    gov.init_store(OPERATOR)
    me = current_operator()
    _engage_roles(gov, me)
    _engage_roles(gov)
    _whitelist(gov, "restart_service")
    token = gov.tokens.create(OPERATOR, OPERATOR).secret
    gov.close()
    (tmp_path / "serve").mkdir()
    server = ServeProcess(url, tmp_path / "serve").wait_ready()
    marker = Path(url + ".kill-switch")
    try:
        assert httpx.get(server.base + "/health", timeout=10).json()["status"] == "healthy"
        _fill(tmpfs)

        cli = _cli(url, "kill-switch", "engage", "--reason", "INC-77 disk full")
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.startswith(MARKER_ONLY.format(path=marker)), cli.stdout
        assert "Traceback" not in cli.stderr
        gate = _cli(url, "gate", "restart_service", "--json")  # yet another process
        assert gate.returncode == 4 and f"marker file {marker}" in json.loads(gate.stdout)["reason"]
        status = _cli(url, "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["killSwitch"]["marker"]["path"] == str(marker)

        marker.unlink()  # now the API's engage meets the full disk
        r = httpx.post(server.base + "/api/kill-switch", timeout=30, headers={"Authorization": f"Bearer {token}"},
                       json={"action": "engage", "reason": "INC-78 via the API"})
        assert r.status_code == 200, r.text
        assert r.json()["via"] == "marker" and r.json()["message"].startswith(MARKER_ONLY.format(path=marker))
        assert r.json()["killSwitch"]["engaged"] is True
        served_gate = httpx.post(server.base + "/api/gate", json={"commandType": "restart_service"}, timeout=10)
        assert served_gate.json()["decision"] == "deny" and "marker file" in served_gate.json()["reason"]
        health = httpx.get(server.base + "/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "degraded", health.text
        assert health.json()["store"]["writable"] is False and health.json()["killSwitchMarker"]["engaged"] is True
        state = httpx.get(server.base + "/api/governance/state", timeout=10).json()
        assert state["killSwitch"]["engaged"] and state["killSwitch"]["marker"]["path"] == str(marker)
    finally:
        _unfill(tmpfs)
        server.stop()
    for log in (server.log(), cli.stderr):  # no line claims an engagement the store did not commit
        assert "alert trigger critical: KILL SWITCH ENGAGED" not in log, log
    assert "by marker file" in server.log() and "by marker file" in cli.stderr


# --- the store cannot even be opened: `kill-switch engage` still engages -----------------------------------


def _initialised(url: str) -> None:
    from console.identity import current_operator
    from engine.clock import SystemClock
    gov = Governance(Store(url), SystemClock())
    gov.init_store(OPERATOR)
    _engage_roles(gov, current_operator())
    _whitelist(gov, "restart_service")
    gov.close()


def _garbage(path: Path) -> None:
    import random
    path.write_bytes(random.Random(7).randbytes(200_000))


def _corrupt_pages(path: Path) -> None:
    import random
    with path.open("r+b") as f:  # the header and the schema page stay; pages 3-22 become noise
        f.seek(3 * 4096)
        f.write(random.Random(7).randbytes(20 * 4096))


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("breakage", [_garbage, _corrupt_pages, _directory, Path.unlink],
                         ids=["not-a-database", "corrupt-pages", "a-directory", "deleted"])
def test_engage_from_the_cli_uses_the_marker_when_the_sqlite_store_cannot_be_opened(tmp_path, breakage):
    """Before: `kill-switch engage` opened the store first and failed there (exit 1, a traceback for a corrupt
    page), never reaching the marker; a server still holding the old file kept answering allow."""
    url = str(tmp_path / "governance.db")
    _initialised(url)
    breakage(Path(url))
    marker = Path(url + ".kill-switch")
    res = _cli(url, "kill-switch", "engage", "--reason", "INC-90 store broken")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "engaged by marker file " + str(marker) + " only" in res.stdout and "Traceback" not in res.stderr
    assert json.loads(marker.read_text())["reason"] == "INC-90 store broken"
    again = _cli(url, "kill-switch", "engage", "--reason", "again")
    assert again.returncode == 0 and "engaged already by marker file" in again.stdout, again.stdout + again.stderr


def test_engage_from_the_cli_creates_nothing_beside_a_store_path_whose_directory_is_missing(tmp_path):
    url = str(tmp_path / "typo" / "governance.db")
    res = _cli(url, "kill-switch", "engage", "--reason", "x")
    assert res.returncode == 1 and "the kill switch is NOT engaged" in res.stderr, res.stderr
    assert not (tmp_path / "typo").exists()


@pytest.mark.postgres
def test_engage_from_the_cli_uses_the_marker_when_postgresql_keeps_the_store_from_opening(postgres_url, tmp_path):
    """Another session holds alembic_version locked: opening the store (its migration check) waited for ever,
    and the engage with it. Now the engage gives opening ENGAGE_OPEN_DEADLINE_S, then uses the marker."""
    import time

    from console.cli import ENGAGE_OPEN_DEADLINE_S
    _initialised(postgres_url)
    marker = tmp_path / "kill-switch"
    locker = sa.create_engine(postgres_url)
    try:
        with locker.connect() as conn:
            conn.execute(sa.text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
            env = {**os.environ, "GOVCON_DATABASE_URL": postgres_url, "GOVCON_CONFIG": "/nonexistent/govcon.toml",
                   "GOVCON_KILL_SWITCH_MARKER": str(marker)}
            started = time.monotonic()
            res = subprocess.run([sys.executable, "-m", "console", "kill-switch", "engage", "--reason", "INC-91"],
                                 env=env, capture_output=True, text=True, timeout=120,
                                 cwd=Path(__file__).resolve().parents[2])
            took = time.monotonic() - started
            conn.rollback()
    finally:
        locker.dispose()
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"store cannot be opened: engaged by marker file {marker} only" in res.stdout
    assert f"did not open within {ENGAGE_OPEN_DEADLINE_S:g} s" in res.stdout
    assert took < ENGAGE_OPEN_DEADLINE_S + 20
    assert marker.exists()


def test_a_marker_that_cannot_be_removed_keeps_the_switch_engaged_and_every_release_says_so(gov, tmp_path):
    """An immutable marker file (chattr +i): the release commits in the store but cannot remove the file. The
    first release said so with exit 0, and a second said "not engaged; nothing changed" while status and the
    gate said engaged. Now the first fails (exit 1) and the second names the file that still engages."""
    from engine.kill_marker import MarkerError
    _engage_roles(gov)
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")
    _whitelist(gov, "restart_service")
    path = gov.kill_marker.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"by": "bob", "reason": "by hand"}))
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here (needs root on a filesystem with attributes)")
    try:
        first = gov.overrides.kill_switch("release", OPERATOR, "done")
        assert first.failed and "the gate denies until the file is removed" in first.message, first.message
        assert gov.gate.decide("restart_service").decision == "deny"
        with pytest.raises(MarkerError, match=f"its marker file {path} is still there"):
            gov.overrides.kill_switch("release", OPERATOR, "done, again")
        assert gov.status()["killSwitch"]["engaged"] is True
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    again = gov.overrides.kill_switch("release", OPERATOR, "the file is removable now")
    assert not path.exists() and not again.failed, again.message
    assert gov.gate.decide("restart_service").decision == "allow"


def test_the_api_engages_by_the_marker_for_a_token_it_confirmed_when_the_store_cannot_be_read(tmp_path, clock):
    """POST /api/kill-switch had to read the store to check the token before anything else, so with the store
    unreadable it answered 503 and nothing engaged. A token the store confirmed earlier in this process now
    still identifies its operator for that call alone; a token never confirmed, or forgotten after a revocation
    here, does not; a release still needs the store."""
    from tests.integration.test_api import make_api
    path = tmp_path / "governance.db"
    gov = Governance(Store(str(path)), clock)
    gov.init_store(OPERATOR)
    _engage_roles(gov)
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")
    good = gov.tokens.create(OPERATOR, OPERATOR).secret
    revoked = gov.tokens.create(OPERATOR, OPERATOR)
    roleless = gov.tokens.create(OPERATOR, "nobody").secret  # holds no role that may engage
    api = make_api(gov)
    marker = Path(f"{path}.kill-switch")

    def call(path_: str, secret: str, **body):
        return api.post(path_, json=body or None, headers={"Authorization": f"Bearer {secret}"})
    try:
        with api.client:
            assert call("/api/governance/run-cycle", revoked.secret).status_code == 200  # confirmed by the store
            gov.tokens.revoke(OPERATOR, revoked.id)
            api.tokens.forget()  # what a revocation through this service does (TokenBook.revoke)
            assert call("/api/governance/run-cycle", good).status_code == 200  # confirmed by the store
            assert api.get("/api/governance/state", headers={"Authorization": f"Bearer {roleless}"}
                           ).status_code == 200  # confirmed by the store too, but may not engage
            path.unlink()  # from here the store cannot be read (storage/store.py Store.replaced)

            for unknown in ("never-seen-token", revoked.secret, roleless):
                answer = call("/api/kill-switch", unknown, action="engage", reason="INC-9")
                assert answer.status_code == 503 and not marker.exists(), answer.text
            answer = call("/api/kill-switch", good, action="engage", reason="INC-9 store gone")
            assert answer.status_code == 200, answer.text
            assert answer.json()["via"] == "marker" and answer.json()["killSwitch"]["engaged"] is True
            assert json.loads(marker.read_text())["by"] == OPERATOR
            assert call("/api/kill-switch", good, action="release", reason="x").status_code == 503
            assert call("/api/governance/run-cycle", good).status_code == 503  # nothing else takes the memory
    finally:
        gov.store.dispose()


def test_the_api_engages_by_the_marker_when_the_store_is_corrupt(tmp_path, clock):
    """A corrupt page makes the token's lookup raise sqlite3.DatabaseError, not StoreUnavailable: the route
    answered 500 and nothing engaged. A confirmed token of an engaging role engages by the marker."""
    import random

    from tests.integration.test_api import make_api
    path = tmp_path / "governance.db"
    gov = Governance(Store(str(path)), clock)
    gov.init_store(OPERATOR)
    _engage_roles(gov)
    good = gov.tokens.create(OPERATOR, OPERATOR).secret
    api = make_api(gov)
    headers = {"Authorization": f"Bearer {good}"}
    try:
        with api.client:
            assert api.post("/api/governance/run-cycle", headers=headers).status_code == 200
            gov.store.dispose()  # no page of the old file kept in a pooled connection's cache
            api.gov.store.dispose()
            with path.open("r+b") as f:
                f.write(random.Random(3).randbytes(4096))  # the header and the first page: noise
            answer = api.post("/api/kill-switch", json={"action": "engage", "reason": "INC-10 corrupt store"},
                              headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["via"] == "marker" and Path(f"{path}.kill-switch").exists()
    finally:
        gov.store.dispose()
