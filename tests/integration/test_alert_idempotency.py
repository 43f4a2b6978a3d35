"""Alert delivery is at least once, and a slow sink no longer multiplies sends (issue 11, point 7).

Every attempt of one outbox row carries the same ``Idempotency-Key``; a request that timed out is retried
only after more than its timeout (the sink has finished with the first by then), with a longer timeout.
The sinks are real HTTP servers on 127.0.0.1 that sleep past the notifier's timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine.alerts import Alert, load_sinks
from engine.notifier import Notifier, idempotency_key
from storage import outbox_repo
from tests.polling import wait_until


class SlowSink:
    """Answers 200 after ``delay(n)`` seconds for the nth request; records (key header, dedup key)."""

    def __init__(self, delay: Callable[[int], float]) -> None:
        self.received: list[tuple[str | None, str]] = []
        self.answered = 0  # requests whose handler has finished (answered or found the notifier gone)
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with sink._lock:
                    sink.received.append((self.headers.get("Idempotency-Key"), body.get("dedup_key")))
                    n = len(sink.received)
                time.sleep(delay(n))
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the notifier timed out and hung up
                with sink._lock:
                    sink.answered += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda *a: None
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every request received has been answered (a slow one finishes at the sink too)."""
        def idle() -> bool:
            with self._lock:
                return self.answered == len(self.received)
        wait_until(idle, timeout=timeout, interval=0.02, what="the sink to answer every request")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def slow_sink():
    made: list[SlowSink] = []

    def make(delay: Callable[[int], float]) -> SlowSink:
        made.append(SlowSink(delay))
        return made[-1]
    yield make
    for s in made:
        s.stop()


def _deliver_until_sent(store, clock, notifier: Notifier, *, rounds: int = 60, step: float = 1.0) -> None:
    """The scheduler's delivery job, run every ``step`` seconds of the test clock."""
    for _ in range(rounds):
        notifier.deliver_due()
        if notifier.pending_count() == 0:
            return
        clock.advance(step)


def _resolve(clock) -> Alert:
    return Alert(kind="resolve", severity="critical", title="Kill switch released by alice", body="fixed",
                 dedup_key="govcon-kill-switch", at=clock.now())


def test_a_sink_slower_than_the_timeout_once_gets_at_most_two_sends_with_one_key(store, clock, slow_sink):
    sink = slow_sink(lambda n: 1.2 if n == 1 else 0.0)
    notifier = Notifier(store, clock, load_sinks({"sinks": [{"name": "hook", "type": "webhook", "url": sink.url,
                                                              "timeout": 0.4}]}), base_backoff=0.1)
    with store.write() as conn:
        notifier.enqueue(conn, _resolve(clock))
    with store.read() as conn:
        [row] = outbox_repo.list_rows(conn)
    _deliver_until_sent(store, clock, notifier, step=0.1)
    sink.wait_idle()  # let the first, slow request finish at the sink too
    assert 1 <= len(sink.received) <= 2, sink.received
    keys = {key for key, _ in sink.received}
    assert keys == {idempotency_key(row.id, "govcon-kill-switch")} == {f"govcon-{row.id}-govcon-kill-switch"}
    with store.read() as conn:
        [row] = outbox_repo.list_rows(conn)
    assert row.status == "sent" and row.attempts == 2
    notifier.close()


def test_a_timed_out_attempt_waits_longer_than_its_timeout_and_the_next_one_may_take_longer(store, clock,
                                                                                           slow_sink):
    sink = slow_sink(lambda n: 0.9)  # always slower than the configured 0.4 s
    notifier = Notifier(store, clock, load_sinks({"sinks": [{"name": "hook", "type": "webhook", "url": sink.url,
                                                              "timeout": 0.4}]}), base_backoff=0.1)
    with store.write() as conn:
        notifier.enqueue(conn, _resolve(clock))
    start = clock.now()
    assert notifier.deliver_due().failed == 1
    with store.read() as conn:
        [row] = outbox_repo.list_rows(conn)
    assert row.last_error.startswith("timed out after 0.4s")
    assert row.next_attempt_at - start >= timedelta(seconds=0.8)  # twice the timeout, not the 0.1 s backoff
    _deliver_until_sent(store, clock, notifier, step=0.1)
    sink.wait_idle()
    assert len(sink.received) <= 3, sink.received  # 0.4 s, 0.8 s, then 1.6 s: the sink's 0.9 s fits
    assert len({key for key, _ in sink.received}) == 1
    with store.read() as conn:
        assert outbox_repo.list_rows(conn)[0].status == "sent"
    notifier.close()


def test_the_idempotency_key_is_a_valid_header_for_any_dedup_key():
    assert idempotency_key(7, "govcon-breaker-cbe-1") == "govcon-7-govcon-breaker-cbe-1"
    key = idempotency_key(8, "naïve key/with spaces")
    assert key.isascii() and " " not in key and key.startswith("govcon-8-")
