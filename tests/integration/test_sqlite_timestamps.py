"""Properties of SQLite's timestamp fast path (storage/events_repo.py): bulk inserts bypass SQLAlchemy's
per-value type processing and format the timestamps themselves. Whatever the instant and the UTC offset
it was given in, the text stored is what SQLAlchemy itself would have bound (so queries, whose bounds
SQLAlchemy binds, compare like with like), a read gives the same instant back, and a window query finds
exactly the rows in the window."""

from __future__ import annotations

import itertools
import shutil
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from storage import events_repo, tables
from storage.store import Store
from storage.types import UTCDateTime

CMD = tables.command_events
SQLITE = sqlite.dialect()
BIND = UTCDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)  # what SQLAlchemy stores on SQLite

offsets = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59),
                                            max_value=timedelta(hours=23, minutes=59)))
# years 1900-2200: wide enough for any store, inside what astimezone can shift without overflowing
instants = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 12, 30), timezones=offsets)


@given(when=instants)
def test_the_fast_path_stores_what_sqlalchemy_would_bind(when):
    text = events_repo._sqlite_datetime(when)
    assert text == BIND(when)
    assert datetime.fromisoformat(text).replace(tzinfo=UTC) == when  # the same instant, in UTC


@given(a=instants, b=instants)
def test_the_stored_text_orders_as_the_instants_do(a, b):
    """SQLite compares the texts: their order must be the instants' order."""
    ta, tb = events_repo._sqlite_datetime(a), events_repo._sqlite_datetime(b)
    assert (ta < tb) == (a < b) and (ta == tb) == (a == b)


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="naive"):
        events_repo._sqlite_datetime(datetime(2026, 1, 1))


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    path = tmp_path_factory.mktemp("fast-path") / "template.db"
    Store(str(path)).dispose()  # migrated, empty
    return path


def test_rows_inserted_by_the_fast_path_read_back_and_fall_in_their_windows(migrated, tmp_path):
    shutil.copy(migrated, tmp_path / "governance.db")
    store = Store(str(tmp_path / "governance.db"))
    counter = itertools.count()

    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    @given(ats=st.lists(instants, min_size=1, max_size=20), same_arrival=st.booleans(), bounds=st.tuples(instants, instants))
    def check(ats, same_arrival, bounds):
        prefix = f"e{next(counter)}-"
        arrival = datetime(2026, 11, 20, 12, tzinfo=UTC)
        rows = [{"command_id": f"{prefix}{i}", "command_type": "t", "status": "succeeded", "autonomous": True,
                 "at": at, "ingested_at": arrival if same_arrival else at, "service": None,
                 "judged_on_arrival": False} for i, at in enumerate(ats)]
        with store.write() as conn:
            assert events_repo.insert_command_events(conn, rows) == len(rows)
        mine = CMD.c.command_id.startswith(prefix)
        with store.read() as conn:
            back = dict(conn.execute(sa.select(CMD.c.command_id, CMD.c.at).where(mine)).all())
            raw = dict(conn.exec_driver_sql("SELECT command_id, at FROM command_events WHERE command_id LIKE ?",
                                            (prefix + "%",)).all())
            start, end = sorted(bounds)
            found = set(conn.execute(sa.select(CMD.c.command_id).where(mine, CMD.c.at >= start, CMD.c.at < end))
                        .scalars())
        assert back == {r["command_id"]: r["at"].astimezone(UTC) for r in rows}
        assert raw == {r["command_id"]: BIND(r["at"]) for r in rows}
        assert found == {r["command_id"] for r in rows if start <= r["at"] < end}
    try:
        check()
    finally:
        store.dispose()
