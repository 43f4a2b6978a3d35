"""Writers of one SQLite store in one process (storage/writer_queue.py): a writer waiting behind another gets
in as the other commits, not at the busy handler's next try (1, 2, 5, 10 … ms later); a writer looping back to
back does not starve a kill switch; a wait longer than the busy timeout fails as StoreUnavailable, and the
store takes writes again afterwards."""

from __future__ import annotations

import statistics
import threading
import time
from datetime import timedelta

import pytest

from engine.governance import Governance
from storage import db, state_repo
from storage.db import StoreUnavailable
from storage.store import Store
from tests.conftest import OPERATOR, T0


@pytest.fixture
def sqlite_gov(sqlite_url, clock, store_template):
    store_template.fill_sqlite(sqlite_url)
    store = Store(sqlite_url)
    gov = Governance(store, clock)
    gov.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
    yield gov
    store.dispose()


def _touch(conn) -> None:
    state_repo.update_state(conn, command_whitelist=["restart_service"])


def test_a_waiting_writer_gets_in_as_the_one_ahead_commits(sqlite_gov):
    store, lags = sqlite_gov.store, []
    for _ in range(10):
        holding, committed_at, began_at = threading.Event(), [], []

        def second() -> None:
            holding.wait(5)
            with store.write() as conn:
                began_at.append(time.perf_counter())
                _touch(conn)

        t = threading.Thread(target=second)
        t.start()
        with store.write() as conn:
            _touch(conn)
            holding.set()
            time.sleep(0.012)  # the second writer is waiting by now
        committed_at.append(time.perf_counter())
        t.join(10)
        lags.append(began_at[0] - committed_at[0])
    # with SQLite's busy handler alone the second writer came in 3-8 ms after the commit (its sleeps: 1, 2, 5 ms)
    assert statistics.median(lags) < 0.0025, [f"{x * 1000:.2f} ms" for x in lags]


def test_a_writer_looping_back_to_back_does_not_starve_the_kill_switch(sqlite_gov):
    store, stop = sqlite_gov.store, threading.Event()
    sqlite_gov.grant_role(OPERATOR, OPERATOR, "incident-commander")

    def looper() -> None:
        while not stop.is_set():
            with store.write() as conn:
                _touch(conn)
                time.sleep(0.005)

    t = threading.Thread(target=looper)
    t.start()
    try:
        time.sleep(0.05)
        took = []
        for i in range(5):
            started = time.perf_counter()
            result = sqlite_gov.overrides.kill_switch("engage" if i % 2 == 0 else "release", OPERATOR, f"round {i}")
            took.append(time.perf_counter() - started)
            assert result.changed and result.via == "store", result
    finally:
        stop.set()
        t.join(10)
    assert max(took) < 0.5, took


def test_a_wait_past_the_busy_timeout_fails_and_the_store_takes_writes_after(sqlite_gov, monkeypatch):
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    store, holding, release = sqlite_gov.store, threading.Event(), threading.Event()

    def holder() -> None:
        with store.write() as conn:
            _touch(conn)
            holding.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert holding.wait(5)
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable, match="database is locked"), store.write() as conn:
            _touch(conn)
        assert 0.19 <= time.perf_counter() - started < 3
    finally:
        release.set()
        t.join(10)
    with store.write() as conn:
        state_repo.update_state(conn, command_whitelist=["scale_up"])
    with store.read() as conn:
        assert state_repo.get_state(conn).command_whitelist == ["scale_up"]


def test_a_writer_waiting_for_its_lanes_pool_does_not_hold_the_other_lanes_writers(sqlite_gov):
    """The queue is taken once the writer has its connection: a default-lane writer stuck behind a read flood
    (every pooled connection of that lane held) must not keep the safety lane's writes out."""
    store = sqlite_gov.store
    engine = store.engine_for("default")
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]
    def stuck_writer() -> None:  # gets its connection once the flood ends, then writes
        with store.write(lane="default") as conn:
            _touch(conn)

    stuck = threading.Thread(target=stuck_writer)
    try:
        stuck.start()
        time.sleep(0.3)  # the default-lane writer waits for a connection now
        started = time.perf_counter()
        with store.write(lane="safety") as conn:
            _touch(conn)
        assert time.perf_counter() - started < 1.0
    finally:
        for c in held:
            c.close()
        stuck.join(40)


def test_the_queue_and_the_busy_handler_share_one_budget(sqlite_url, store_template, monkeypatch):
    """A writer of another process holds the file: a writer of this process that first waited in the queue
    behind one that timed out does not then get a whole busy timeout of its own."""
    import sqlite3

    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 400)
    store_template.fill_sqlite(sqlite_url)
    store = Store(sqlite_url)
    other = sqlite3.connect(sqlite_url, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other process's writer
    try:
        errors: list[float] = []

        def writer(delay: float) -> None:
            time.sleep(delay)
            started = time.perf_counter()
            try:
                with store.write() as conn:
                    _touch(conn)
            except StoreUnavailable:
                errors.append(time.perf_counter() - started)

        first = threading.Thread(target=writer, args=(0.0,))
        second = threading.Thread(target=writer, args=(0.1,))
        first.start()
        second.start()
        first.join(10)
        second.join(10)
        assert len(errors) == 2
        assert max(errors) < 0.4 + 0.25, errors  # not 0.3 in the queue and then 0.4 more in the busy handler
    finally:
        other.execute("ROLLBACK")
        other.close()
        store.dispose()
