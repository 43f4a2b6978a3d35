"""storage.read_ahead on a real store: every chunk in order, at most ``depth`` chunks read ahead of a
consumer that does not take them, the reader's error raised to the consumer, an early close stopping the
reader, and the caller's lane carried into the reader's thread."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from storage.db import StoreUnavailable
from storage.read_ahead import read_ahead
from storage.store import current_lane, use_lane
from tests.polling import wait_until


def _counting(produced: list[int], n: int):
    def produce(conn):
        for i in range(n):
            produced.append(conn.execute(sa.text("SELECT :i"), {"i": i}).scalar_one())
            yield i
    return produce


def test_every_chunk_arrives_in_order(store):
    assert list(read_ahead(store, _counting([], 50))) == list(range(50))


def test_the_reader_stays_at_most_depth_chunks_ahead(store):
    produced: list[int] = []
    chunks = read_ahead(store, _counting(produced, 1000), depth=3)
    assert next(chunks) == 0
    time.sleep(0.5)  # a consumer busy elsewhere: the reader fills the queue, then waits
    assert len(produced) <= 1 + 3 + 1, produced  # taken, queued, and the one waiting to be queued
    assert list(chunks) == list(range(1, 1000))  # and nothing was lost while it waited


def test_an_error_in_the_reader_is_raised_to_the_consumer(store):
    def produce(conn):
        yield 1
        conn.execute(sa.text("SELECT * FROM no_such_table"))
        yield 2

    chunks = read_ahead(store, produce)
    assert next(chunks) == 1
    # as Store.read raises it in the caller's thread (SQLite's is an OperationalError: store unavailable)
    with pytest.raises((StoreUnavailable, sa.exc.ProgrammingError), match="no_such_table"):
        next(chunks)

    def broken(conn):
        raise ValueError("broken chunk")
        yield

    with pytest.raises(ValueError, match="broken chunk"):
        list(read_ahead(store, broken))


def test_closing_early_stops_the_reader(store):
    produced: list[int] = []
    before = {t.name for t in threading.enumerate()}
    chunks = read_ahead(store, _counting(produced, 10_000), depth=2, name="read-ahead-under-test")
    assert next(chunks) == 0
    chunks.close()
    assert "read-ahead-under-test" not in {t.name for t in threading.enumerate()} - before
    stopped_at = len(produced)
    time.sleep(0.2)
    assert len(produced) == stopped_at < 10_000


def test_the_reader_reads_on_the_callers_lane(store):
    seen: list[str] = []

    def produce(conn):
        seen.append(current_lane())
        yield 1

    with use_lane("safety"):
        assert list(read_ahead(store, produce)) == [1]
    wait_until(lambda: seen, timeout=5)
    assert seen == ["safety"]
