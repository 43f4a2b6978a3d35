"""Outcomes of a grant racing each other and the grant's other writers, on both stores (DESIGN.md "Governed
actions": the first outcome stands; a grant without an outcome by expiresAt becomes expired).

On PostgreSQL ingest takes no store-wide write lock, so two agents' contradicting outcomes for one grant, an
outcome and the expiry job, or an outcome and the runner's release of the grant really do run side by side.
Each test holds one transaction open at a chosen point with a command hook (or the alert sink) and lets the
other go on until PostgreSQL shows it waiting for a lock that transaction holds (``pg_blocking_pids``), or
until it reached the point where, without any lock, it would have done its damage: the interleaving is
certain, not a matter of timing. On SQLite the other writer waits for the file's one writer (this process's
writer queue); the same outcomes must hold there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine.clock import isoformat
from engine.governance import Governance
from engine.policies import load_policies
from storage import state_repo, tables
from storage.store import Store
from tests.conftest import OPERATOR

POLICIES = {"restart": {"command_types": ["restart_service"], "max_per_day": 100, "grant_ttl": "1m"}}
WAIT = 20.0  # seconds any step may take before the test fails (never reached when the code is right)


@pytest.fixture
def agov(store, clock) -> Iterator[Governance]:
    g = Governance(store, clock, policies=load_policies(POLICIES))
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    with g.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    yield g
    g.actions.decision_log.flush()


@pytest.fixture
def agents(store_url, clock) -> Iterator[list[Governance]]:
    """Two more agents' processes on the same store: each its own pools, as separate processes would have."""
    made = [Governance(Store(store_url, apply_migrations=False), clock, policies=load_policies(POLICIES))
            for _ in range(2)]
    yield made
    for g in made:
        g.close()


def _pid(conn: sa.Connection) -> int | None:
    if conn.dialect.name != "postgresql":
        return None
    driver: Any = conn.connection.driver_connection  # psycopg's connection
    return int(driver.info.backend_pid)


class Hold:
    """A command hook (after the ActionBook's, which Governance installs first) that holds its ingest
    transaction at ``at`` ("screen": the outcome screened, not yet inserted; "stored": inserted and its grant
    updated, not yet committed) until ``go`` is set."""

    def __init__(self, at: str) -> None:
        self.at = at
        self.reached = threading.Event()
        self.go = threading.Event()
        self.pid: int | None = None

    def _hold(self, conn: sa.Connection) -> None:
        self.pid = _pid(conn)
        self.reached.set()
        assert self.go.wait(WAIT), "the test never let this transaction go on"

    def screen(self, conn: sa.Connection, rows: list[tuple[int, dict[str, Any]]]) -> dict[int, tuple[str, str]]:
        if self.at == "screen":
            self._hold(conn)
        return {}

    def stored(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if self.at == "stored":
            self._hold(conn)


def _someone_waits_for(gov: Governance, pid: int | None) -> bool:
    """PostgreSQL: whether another backend waits for a lock that backend ``pid`` holds."""
    with gov.store.read() as conn:
        return bool(conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE :p = ANY(pg_blocking_pids(pid))"),
                                 {"p": pid}).scalar_one())


def _until_blocked_or(gov: Governance, holder_pid: int | None, reached: Callable[[], bool]) -> str:
    """Wait until the other writer waits for the held transaction's lock ("blocked") or ``reached()`` says it
    got past where that lock should have stopped it ("reached"). SQLite: its writer waits in the writer queue,
    which shows nothing outside; given a moment, it can only have reached that point if it was not stopped."""
    deadline = time.monotonic() + WAIT
    if holder_pid is None:
        time.sleep(0.3)
        return "reached" if reached() else "blocked"
    while time.monotonic() < deadline:
        if reached():
            return "reached"
        if _someone_waits_for(gov, holder_pid):
            return "blocked"
        time.sleep(0.01)
    raise AssertionError("the second writer neither waited for the first nor went past it")


def _run(target: Callable[[], Any], out: dict[str, Any], key: str) -> threading.Thread:
    def body() -> None:
        try:
            out[key] = target()
        except BaseException as exc:  # reported by the test, not lost in a thread
            out[key] = exc
    t = threading.Thread(target=body, name=f"race-{key}")
    t.start()
    return t


def _join(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), f"{t.name} did not finish"


def _report(gov: Governance, grant_id: str, status: str) -> Callable[[], Any]:
    ev = {"kind": "command", "id": grant_id, "type": "restart_service", "status": status, "autonomous": True,
          "at": isoformat(gov.clock.now())}
    return lambda: gov.ingestor.ingest_objects([ev])


def _outcomes_stored(gov: Governance, grant_id: str) -> list[str]:
    with gov.store.read() as conn:
        return sorted(conn.execute(sa.select(tables.command_events.c.status)
                                   .where(tables.command_events.c.command_id == grant_id)).scalars())


def _audit_actions(gov: Governance, target: str) -> list[str]:
    with gov.store.read() as conn:
        return list(conn.execute(sa.select(tables.audit_log.c.action).where(tables.audit_log.c.target == target)
                                 .order_by(tables.audit_log.c.seq)).scalars())


def _status(gov: Governance, grant_id: str) -> str:
    return gov.actions.show(grant_id)["grant"]["status"]


# --- two agents report outcomes for one grant at once -----------------------------------------------------


@pytest.mark.parametrize(("first", "second", "second_stands", "final"), [
    ("succeeded", "failed", False, "succeeded"),
    ("failed", "succeeded", False, "failed"),
    ("succeeded", "rolled_back", True, "rolled_back"),  # a rollback may follow a run: both stand
])
def test_concurrent_outcomes_for_one_grant_the_first_stands(agov, agents, first, second, second_stands, final):
    """The second ingest screened the grant while the first's outcome was not committed: both saw it open and
    both contradicting outcomes were stored (PostgreSQL), metrics counting a run that both succeeded and failed."""
    gid = agov.gate.decide("restart_service", agent="bot").grant_id
    one, two = agents
    hold_one, hold_two = Hold("screen"), Hold("screen")
    one.ingestor.command_hooks.append(hold_one)
    two.ingestor.command_hooks.append(hold_two)
    out: dict[str, Any] = {}
    t1 = _run(_report(one, gid, first), out, "first")
    assert hold_one.reached.wait(WAIT)  # the first outcome screened, its transaction open
    t2 = _run(_report(two, gid, second), out, "second")
    try:
        how = _until_blocked_or(agov, hold_one.pid, hold_two.reached.is_set)
    finally:
        hold_one.go.set()
        hold_two.go.set()
        _join(t1, t2)
    r1, r2 = out["first"], out["second"]
    assert not isinstance(r1, BaseException) and not isinstance(r2, BaseException), out
    assert (r1.accepted, r1.rejected) == (1, 0), r1
    if second_stands:
        assert (r2.accepted, r2.rejected) == (1, 0), r2
        assert _outcomes_stored(agov, gid) == sorted([first, second])
    else:
        assert (how, r2.accepted, r2.rejected) == ("blocked", 0, 1), (how, r2)
        assert r2.errors[0].field == "status"
        assert f"already has the outcome {first}; the first outcome stands, {second} is refused" \
            in r2.errors[0].message
        assert _outcomes_stored(agov, gid) == [first]  # nothing of the refused one counts anywhere
    assert _status(agov, gid) == final


def test_outcomes_naming_no_grant_are_not_held_back_by_an_outcome_in_flight(agov, agents):
    """Only a batch with an outcome for a grant screens under the command-events lock before its insert: on
    PostgreSQL an ordinary batch (no grant named) screens without waiting for one held there."""
    gid = agov.gate.decide("restart_service", agent="bot").grant_id
    one, two = agents
    hold_one, hold_two = Hold("screen"), Hold("screen")
    one.ingestor.command_hooks.append(hold_one)
    two.ingestor.command_hooks.append(hold_two)
    out: dict[str, Any] = {}
    t1 = _run(_report(one, gid, "succeeded"), out, "first")
    assert hold_one.reached.wait(WAIT)
    plain = {"kind": "command", "id": "cmd-1", "type": "restart_service", "status": "proposed",
             "at": isoformat(agov.clock.now())}
    t2 = _run(lambda: two.ingestor.ingest_objects([plain]), out, "plain")
    try:
        if hold_one.pid is not None:  # PostgreSQL: its screen runs beside the held outcome's
            assert hold_two.reached.wait(WAIT)
    finally:
        hold_one.go.set()
        hold_two.go.set()
        _join(t1, t2)
    assert out["first"].accepted == 1 and out["plain"].accepted == 1, out
    assert _status(agov, gid) == "succeeded"


# --- an outcome and the expiry job ------------------------------------------------------------------------


def _recording_alerts(gov: Governance) -> list[Any]:
    seen: list[Any] = []
    sink = gov.actions.enqueue_alert
    assert sink is not None

    def record(conn: sa.Connection, alert: Any, engaged: bool) -> Any:
        seen.append(alert)
        return sink(conn, alert, engaged)
    gov.actions.enqueue_alert = record
    return seen


def test_an_outcome_committed_as_the_expiry_job_runs_is_not_overwritten(agov, agents, clock):
    """The job read the grant as due, then set it expired by id alone: an outcome committed meanwhile was
    overwritten (grant expired, audited and alerted as "no outcome", the stored succeeded event orphaned; a
    resend is a duplicate, so it never healed)."""
    gid = agov.gate.decide("restart_service", agent="bot").grant_id
    clock.advance(timedelta(minutes=1))  # at its expiresAt: the agent reports as the scheduler's job runs
    alerts = _recording_alerts(agov)
    agent = agents[0]
    hold = Hold("stored")  # the outcome inserted and its grant closed, not yet committed
    agent.ingestor.command_hooks.append(hold)
    out: dict[str, Any] = {}
    t1 = _run(_report(agent, gid, "succeeded"), out, "outcome")
    assert hold.reached.wait(WAIT)
    t2 = _run(agov.actions.expire_due, out, "expiry")
    try:
        how = _until_blocked_or(agov, hold.pid, lambda: "expiry" in out)
    finally:
        hold.go.set()
        _join(t1, t2)
    assert not isinstance(out["expiry"], BaseException), out
    assert how == "blocked", out  # the job waited for the outcome's transaction
    assert out["outcome"].accepted == 1
    assert out["expiry"] == {"grants": 0, "requests": 0}
    assert _status(agov, gid) == "succeeded"
    assert _audit_actions(agov, gid) == ["action.grant"]
    assert not [a for a in alerts if gid in (a.dedup_key or "")]
    assert agov.actions.expire_due() == {"grants": 0, "requests": 0}  # and later runs leave it be
    assert _status(agov, gid) == "succeeded"


def test_an_outcome_arriving_while_the_grant_expires_still_closes_it(agov, agents, clock):
    """The other order: the job has set the grant expired (not yet committed) when the outcome comes. The late
    outcome is accepted and closes the grant (an expired grant takes its outcome); the expiry stays audited."""
    gid = agov.gate.decide("restart_service", agent="bot").grant_id
    clock.advance(timedelta(minutes=1))
    held = threading.Event()
    go = threading.Event()
    pid: list[int | None] = []
    sink = agov.actions.enqueue_alert
    assert sink is not None

    def holding_sink(conn: sa.Connection, alert: Any, engaged: bool) -> Any:
        if "grant-expired" in (alert.dedup_key or ""):  # inside the expiry's transaction, after its UPDATE
            pid.append(_pid(conn))
            held.set()
            assert go.wait(WAIT)
        return sink(conn, alert, engaged)
    agov.actions.enqueue_alert = holding_sink
    out: dict[str, Any] = {}
    t1 = _run(agov.actions.expire_due, out, "expiry")
    assert held.wait(WAIT)
    t2 = _run(_report(agents[0], gid, "succeeded"), out, "outcome")
    try:
        _until_blocked_or(agov, pid[0], lambda: "outcome" in out)
    finally:
        go.set()
        _join(t1, t2)
    assert out["expiry"] == {"grants": 1, "requests": 0}
    assert not isinstance(out["outcome"], BaseException), out
    assert out["outcome"].accepted == 1
    assert _status(agov, gid) == "succeeded"
    assert _audit_actions(agov, gid) == ["action.grant", "action.expire"]


# --- an outcome and the runner's release of the grant -----------------------------------------------------


def test_a_release_does_not_overwrite_an_outcome_committed_meanwhile(agov, agents):
    """release() read the grant open, then set it released by id alone: an outcome committed meanwhile was
    overwritten and a release audited for a grant that had run."""
    gid = agov.gate.decide("restart_service", agent="bot").grant_id
    agent = agents[0]
    hold = Hold("stored")
    agent.ingestor.command_hooks.append(hold)
    out: dict[str, Any] = {}
    t1 = _run(_report(agent, gid, "failed"), out, "outcome")
    assert hold.reached.wait(WAIT)
    t2 = _run(lambda: agov.actions.release("runner", gid, "the check failed"), out, "release")
    try:
        how = _until_blocked_or(agov, hold.pid, lambda: "release" in out)
    finally:
        hold.go.set()
        _join(t1, t2)
    assert how == "blocked", out
    assert out["outcome"].accepted == 1
    assert out["release"] is False
    assert _status(agov, gid) == "failed"
    assert _audit_actions(agov, gid) == ["action.grant"]


def test_release_and_expiry_still_close_an_open_grant(agov, clock):
    """The conditional updates change what they always did when nothing raced them."""
    released = agov.gate.decide("restart_service", agent="bot").grant_id
    expiring = agov.gate.decide("restart_service", agent="bot").grant_id
    assert agov.actions.release("runner", released, "nothing ran") is True
    assert agov.actions.release("runner", released, "again") is False
    assert _status(agov, released) == "released"
    assert _audit_actions(agov, released) == ["action.grant", "action.release"]
    clock.advance(timedelta(minutes=1))
    assert agov.actions.expire_due() == {"grants": 1, "requests": 0}
    assert _status(agov, expiring) == "expired" and _status(agov, released) == "released"
    assert _audit_actions(agov, expiring) == ["action.grant", "action.expire"]
