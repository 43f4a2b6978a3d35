"""storage/writer_queue.py with real threads: first come, first in; no barging by the writer that just left;
reentrant per thread; a wait that runs out leaves nothing behind."""

from __future__ import annotations

import threading
import time

import pytest

from storage.writer_queue import WriterQueue


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_waiting_writers_are_let_in_in_the_order_they_came():
    q, order = WriterQueue(), []
    assert q.acquire(1)

    def writer(name: str) -> None:
        assert q.acquire(5)
        order.append(name)
        q.release()

    threads = []
    for i, name in enumerate("bcde"):
        threads.append(threading.Thread(target=writer, args=(name,)))
        threads[-1].start()
        _wait_for(lambda n=i + 1: q.waiting == n)  # each queued behind the one before
    q.release()
    for t in threads:
        t.join(5)
    assert order == list("bcde")


def test_the_writer_that_just_left_cannot_take_it_again_ahead_of_one_waiting():
    q, order = WriterQueue(), []
    assert q.acquire(1)
    waiter = threading.Thread(target=lambda: (q.acquire(5), order.append("waiter"), q.release()))
    waiter.start()
    _wait_for(lambda: q.waiting == 1)
    q.release()
    assert q.acquire(5)  # straight back: it is the waiter's turn first
    order.append("looper")
    q.release()
    waiter.join(5)
    assert order == ["waiter", "looper"]


def test_a_thread_may_enter_again_and_the_others_wait_for_its_last_release():
    q, got = WriterQueue(), threading.Event()
    assert q.acquire(1) and q.acquire(1)
    other = threading.Thread(target=lambda: (q.acquire(5), got.set(), q.release()))
    other.start()
    _wait_for(lambda: q.waiting == 1)
    q.release()
    assert not got.wait(0.1)
    q.release()
    assert got.wait(5)
    other.join(5)


def test_a_wait_that_runs_out_says_so_and_leaves_no_place_in_the_queue():
    q = WriterQueue()
    assert q.acquire(1)
    results = []
    t = threading.Thread(target=lambda: results.append(q.acquire(0.1)))
    started = time.monotonic()
    t.start()
    t.join(5)
    assert results == [False] and 0.09 <= time.monotonic() - started < 2
    assert q.waiting == 0
    q.release()
    assert q.acquire(0)  # free: nobody was handed the turn
    q.release()


def test_only_the_writer_may_release():
    q = WriterQueue()
    with pytest.raises(RuntimeError, match="not its writer"):
        q.release()
    assert q.acquire(1)
    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, q.release)))
    t.start()
    t.join(5)
    q.release()
    assert errors


def test_a_wait_interrupted_by_a_signal_leaves_no_place_behind():
    import signal

    class Interrupted(Exception):
        pass

    def on_alarm(signum, frame):
        raise Interrupted

    q, holding, release = WriterQueue(), threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: (q.acquire(1), holding.set(), release.wait(5), q.release()))
    holder.start()
    assert holding.wait(5)
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            q.acquire(5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert q.waiting == 0
    release.set()
    holder.join(5)
    got = []
    other = threading.Thread(target=lambda: (got.append(q.acquire(1)), q.release()))
    other.start()
    other.join(5)
    assert got == [True]  # not handed to the interrupted wait, which would never have released it
