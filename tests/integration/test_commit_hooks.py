"""After-commit callbacks: run after a real COMMIT only, and safe when threads share a fresh engine."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from storage import commit_hooks
from storage.db import create_db_engine


def test_callbacks_run_after_commit_and_never_after_rollback(store_url):
    engine = create_db_engine(store_url)
    ran: list[str] = []
    try:
        with engine.begin() as conn:
            commit_hooks.after_commit(conn, lambda: ran.append("committed"))
            assert ran == []  # not yet: the COMMIT has not been sent
        assert ran == ["committed"]
        with pytest.raises(RuntimeError):
            with engine.begin() as conn:
                commit_hooks.after_commit(conn, lambda: ran.append("rolled back"))
                raise RuntimeError("abort")
        with engine.begin() as conn:  # the same pooled connection: nothing left over from the rollback
            conn.execute(sa.text("SELECT 1"))
        assert ran == ["committed"]
    finally:
        engine.dispose()


def test_first_callbacks_on_a_fresh_engine_race_no_begin(tmp_path):
    """The hook is installed when the engine is made. Installed lazily by the first callback, it added a
    BEGIN listener while other threads' BEGINs walked the listener deque: "deque mutated during
    iteration" failed an ingest in the API tests about one run in three."""
    failures: list[BaseException] = []
    for round_ in range(20):
        engine = create_db_engine(str(tmp_path / f"race-{round_}.sqlite"))
        start = threading.Barrier(4)
        ran = []

        def work() -> None:
            try:
                start.wait()
                for _ in range(30):
                    with engine.begin() as conn:
                        conn.execute(sa.text("SELECT 1"))
                        commit_hooks.after_commit(conn, lambda: ran.append(1))
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        engine.dispose()
        assert not failures, failures[:3]
        assert len(ran) == 4 * 30
