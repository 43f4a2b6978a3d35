"""Alerts end to end: the outbox in a real store (SQLite and PostgreSQL), real HTTP sinks on 127.0.0.1.

The sinks are ThreadingHTTPServer instances that record what they receive; some answer 503 for a
while, one is a closed port that starts listening later, one is slower than its timeout.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine.alerts import KILL_SWITCH_DEDUP_KEY, Alert, SinkConfig, load_sinks
from engine.notifier import FOLDED_NOTE, Notifier
from storage import outbox_repo

PD_KEY = "0123456789abcdef0123456789abcdef"  # 32 hex: a routing key's shape, so redaction must spare config


# --- real sinks ------------------------------------------------------------------------------------------

Behaviour = Callable[[int, dict], tuple[int, float, dict]]  # (nth request, body) -> (status, delay, headers)


def ok(_n: int, _body: dict) -> tuple[int, float, dict]:
    return 200, 0.0, {}


class SinkServer:
    """An HTTP sink on 127.0.0.1 recording every request: (status answered, JSON body)."""

    def __init__(self, behaviour: Behaviour = ok, port: int = 0) -> None:
        self.behaviour = behaviour
        self.requests: list[tuple[int, dict]] = []
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    n = len(server.requests) + 1
                    status, delay, headers = server.behaviour(n, body)
                    server.requests.append((status, body))
                server.arrived.set()
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.handle_error = lambda *a: None  # a client that timed out and hung up is expected
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def delivered(self) -> list[dict]:
        """Bodies answered with 2xx: what the people behind the sink actually got."""
        with self._lock:
            return [body for status, body in self.requests if 200 <= status < 300]

    def delivered_keys(self) -> Counter:
        return Counter(_dedup_key(b) for b in self.delivered())

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _dedup_key(body: dict) -> str:
    if "dedup_key" in body:
        return body["dedup_key"]
    return body["blocks"][-1]["elements"][0]["text"].rsplit(" · ", 1)[1]  # Slack: last in the context line


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def servers():
    started: list[SinkServer] = []

    def start(behaviour: Behaviour = ok, port: int = 0) -> SinkServer:
        server = SinkServer(behaviour, port)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def make_notifier(store, clock):
    made: list[Notifier] = []

    def make(sinks: list[SinkConfig], **kw: Any) -> Notifier:
        notifier = Notifier(store, clock, sinks, **kw)
        made.append(notifier)
        return notifier
    yield make
    for notifier in made:
        notifier.close()


def sink(name: str, type: str, url: str, **kw: Any) -> SinkConfig:
    entry = {"name": name, "type": type, "url": url, "timeout": 1.0, **kw}
    if type == "pagerduty":
        entry.setdefault("routing_key", PD_KEY)
    return load_sinks({"sinks": [entry]})[0]


def alert(clock, key: str, severity: str = "critical", kind: str = "trigger", **kw: Any) -> Alert:
    fields = {"title": f"Circuit breaker tripped: {key}", "body": "errorRate > 0.05 over 5m: reverted to L3",
              "details": {"observed": {"errorRate": 0.31}}, **kw}
    return Alert(kind=kind, severity=severity, dedup_key=key, at=clock.now(), **fields)


def enqueue(store, notifier: Notifier, *alerts: Alert, kill_switch_engaged: bool = False) -> int:
    with store.write() as conn:
        return sum(notifier.enqueue(conn, a, kill_switch_engaged=kill_switch_engaged) for a in alerts)


def rows(store, **kw: Any):
    with store.read() as conn:
        return outbox_repo.list_rows(conn, **kw)


# --- routing and payloads -------------------------------------------------------------------------------


def test_routes_critical_to_pager_and_chat_high_to_chat_and_every_tier_to_log(store, clock, servers,
                                                                             make_notifier, caplog):
    pd, chat, hook = servers(), servers(), servers()
    notifier = make_notifier([sink("pager", "pagerduty", pd.url), sink("chat", "slack", chat.url),
                              sink("hook", "webhook", hook.url, severities=["critical", "high"])])
    caplog.set_level(logging.INFO, logger="govcon.alerts")
    added = enqueue(store, notifier, *(alert(clock, f"k-{sev}", sev) for sev in ("critical", "high", "medium", "low")))

    assert added == 3 + 2  # critical: pager, chat, hook; high: chat, hook; medium and low: no sink
    report = notifier.deliver_due()
    assert (report.sent, report.failed, report.dead) == (5, 0, 0)
    assert pd.delivered_keys() == Counter({"k-critical": 1})
    assert chat.delivered_keys() == Counter({"k-critical": 1, "k-high": 1})
    assert hook.delivered_keys() == Counter({"k-critical": 1, "k-high": 1})
    logged = {r.getMessage().split("dedup_key=")[1].split(" ")[0]: r.levelno
              for r in caplog.records if "dedup_key=" in r.getMessage()}
    assert logged == {"k-critical": logging.CRITICAL, "k-high": logging.ERROR, "k-medium": logging.WARNING,
                      "k-low": logging.INFO}
    assert "sinks=log only" in next(r.getMessage() for r in caplog.records if "k-low" in r.getMessage())


def test_each_sink_type_receives_its_own_payload_shape(store, clock, servers, make_notifier):
    pd, chat, hook = servers(), servers(), servers()
    notifier = make_notifier([sink("pager", "pagerduty", pd.url), sink("chat", "slack", chat.url),
                              sink("hook", "webhook", hook.url)])
    enqueue(store, notifier, alert(clock, "govcon-breaker-cbe-1", title="Circuit breaker tripped: High <Error> Rate",
                                   details={"event": "cbe-1", "observed": {"errorRate": 0.31, "commands": 52}}))
    assert notifier.deliver_due().sent == 3

    [page] = pd.delivered()
    assert page == {
        "routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "govcon-breaker-cbe-1",
        "payload": {"summary": "Circuit breaker tripped: High <Error> Rate", "source": "govcon",
                    "severity": "critical", "timestamp": "2026-11-20T12:00:00Z",
                    "custom_details": {"body": "errorRate > 0.05 over 5m: reverted to L3", "kind": "trigger",
                                       "event": "cbe-1", "observed": {"errorRate": 0.31, "commands": 52}}}}
    [message] = chat.delivered()
    assert set(message) == {"text", "blocks"}
    assert message["text"].startswith(":rotating_light: *[CRITICAL]* Circuit breaker tripped: High &lt;Error&gt; Rate")
    assert all(b["type"] in {"section", "context"} for b in message["blocks"])
    assert message["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "errorRate=0.31" in json.dumps(message["blocks"][1])
    [doc] = hook.delivered()
    assert doc == {"kind": "trigger", "severity": "critical", "title": "Circuit breaker tripped: High <Error> Rate",
                   "body": "errorRate > 0.05 over 5m: reverted to L3", "dedup_key": "govcon-breaker-cbe-1",
                   "at": "2026-11-20T12:00:00Z", "source": "govcon",
                   "details": {"event": "cbe-1", "observed": {"errorRate": 0.31, "commands": 52}}}
    # the routing key lives in config only: the stored row never has it
    [pager_row] = rows(store, sink="pager")
    assert "routing_key" not in pager_row.payload and PD_KEY not in json.dumps(pager_row.payload)


def test_pagerduty_trigger_then_resolve_share_the_dedup_key(store, clock, servers, make_notifier):
    pd = servers()
    notifier = make_notifier([sink("pager", "pagerduty", pd.url)])
    enqueue(store, notifier, alert(clock, "govcon-breaker-cbe-7"))
    notifier.deliver_due()
    clock.advance(timedelta(minutes=20))
    enqueue(store, notifier, alert(clock, "govcon-breaker-cbe-7", kind="resolve", title="Resolved: High Error Rate",
                                   body="resolved by alice: bad deploy rolled back"))
    assert notifier.deliver_due().sent == 1

    trigger, resolve = pd.delivered()
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "govcon-breaker-cbe-7"
    assert resolve == {"routing_key": PD_KEY, "event_action": "resolve", "dedup_key": "govcon-breaker-cbe-7"}


# --- delivery through failures ---------------------------------------------------------------------------


def test_sinks_down_for_a_while_then_back_lose_nothing_and_send_nothing_twice(store, clock, servers,
                                                                             make_notifier):
    port = closed_port()
    recovered = threading.Event()
    flaky = servers(lambda n, _b: (200 if recovered.is_set() else 503, 0.0, {}))
    notifier = make_notifier([sink("down", "webhook", f"http://127.0.0.1:{port}/hook"),
                              sink("flaky", "slack", flaky.url)], base_backoff=5, max_backoff=60)
    keys = [f"govcon-breaker-cbe-{i}" for i in range(5)]
    for key in keys[:3]:
        enqueue(store, notifier, alert(clock, key))
    report = notifier.deliver_due()
    assert (report.sent, report.failed, report.dead) == (0, 6, 0)

    for key in keys[3:]:  # more alerts arrive while both sinks are down
        clock.advance(5)
        enqueue(store, notifier, alert(clock, key))
        notifier.deliver_due()
    assert notifier.pending_count() == 10

    back = servers(port=port)  # the down sink comes back on its old port
    recovered.set()            # and the flaky one stops answering 503
    for _ in range(6):
        clock.advance(60)
        notifier.deliver_due()
    assert notifier.pending_count() == 0
    assert back.delivered_keys() == Counter({k: 1 for k in keys})
    assert flaky.delivered_keys() == Counter({k: 1 for k in keys})
    assert [_dedup_key(b) for b in back.delivered()] == keys  # oldest first
    assert all(r.status == "sent" and r.sent_at is not None and r.attempts >= 2 for r in rows(store))

    clock.advance(3600)
    assert notifier.deliver_due() == type(report)(0, 0, 0)
    assert len(back.requests) == 5


def test_failed_rows_wait_for_their_backoff_before_the_next_attempt(store, clock, servers, make_notifier):
    down = servers(lambda n, _b: (503, 0.0, {}))
    notifier = make_notifier([sink("hook", "webhook", down.url)], base_backoff=5, max_backoff=20)
    enqueue(store, notifier, alert(clock, "k1"))
    start = clock.now()

    expected_delays = [5, 10, 20, 20]  # base * 2**failures, capped at max_backoff
    for attempt, delay in enumerate(expected_delays, start=1):
        assert notifier.deliver_due().failed == 1
        [row] = rows(store)
        assert row.attempts == attempt and row.status == "pending"
        assert row.next_attempt_at == clock.now() + timedelta(seconds=delay)
        assert row.last_error == "HTTP 503 from webhook sink 'hook'"
        clock.advance(delay - 0.001)
        assert notifier.deliver_due().failed == 0  # not due yet: no request
        assert len(down.requests) == attempt
        clock.advance(0.001)
    assert clock.now() - start == timedelta(seconds=sum(expected_delays))


def test_dead_letter_after_max_attempts_is_logged_and_never_retried(store, clock, servers, make_notifier, caplog):
    down = servers(lambda n, _b: (500, 0.0, {}))
    notifier = make_notifier([sink("hook", "webhook", down.url)], max_attempts=3, base_backoff=1)
    enqueue(store, notifier, alert(clock, "k-dead"))
    reports = []
    for _ in range(3):
        reports.append(notifier.deliver_due())
        clock.advance(600)
    assert [(r.failed, r.dead) for r in reports] == [(1, 0), (1, 0), (0, 1)]
    [row] = rows(store)
    assert row.status == "dead" and row.attempts == 3 and "gave up after 3 attempts" in row.last_error
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "govcon.alerts"]
    assert len(errors) == 1 and "k-dead" in errors[0].getMessage() and "dead-lettered" in errors[0].getMessage()

    clock.advance(timedelta(days=1))
    notifier.deliver_due()
    assert len(down.requests) == 3 and notifier.pending_count() == 0


def test_a_400_is_dead_at_once_while_429_is_retried_after_retry_after(store, clock, servers, make_notifier):
    server = servers(lambda n, body: (400, 0.0, {}) if body["dedup_key"] == "k-bad"
                     else (429, 0.0, {"Retry-After": "30"}))
    notifier = make_notifier([sink("hook", "webhook", server.url)], base_backoff=5)
    enqueue(store, notifier, alert(clock, "k-bad"), alert(clock, "k-busy"))
    report = notifier.deliver_due()
    assert (report.sent, report.failed, report.dead) == (0, 1, 1)
    bad, busy = rows(store)
    assert bad.status == "dead" and bad.attempts == 1 and bad.last_error.startswith("HTTP 400")
    assert busy.status == "pending" and busy.next_attempt_at == clock.now() + timedelta(seconds=30)


def test_a_slow_sink_times_out_without_holding_the_store(store, clock, servers, make_notifier):
    slow = servers(lambda n, _b: (200, 2.5, {}))
    notifier = make_notifier([sink("slow", "webhook", slow.url, timeout=1.0)])
    enqueue(store, notifier, alert(clock, "k-slow"))
    reports = []
    worker = threading.Thread(target=lambda: reports.append(notifier.deliver_due()))
    started = time.monotonic()
    worker.start()
    assert slow.arrived.wait(5)
    # while the send is in flight, evaluation can still write its trips and alerts
    t0 = time.monotonic()
    enqueue(store, notifier, alert(clock, "k-next", severity="high"))
    assert time.monotonic() - t0 < 0.5 and worker.is_alive()
    worker.join(5)
    assert time.monotonic() - started < 2.0  # gave up at the timeout, did not wait for the answer
    assert reports[0].failed == 1
    slow_row = rows(store, dedup_key="k-slow")[0]
    assert slow_row.status == "pending" and slow_row.last_error.startswith("timed out after 1s")


def test_rows_for_a_sink_no_longer_configured_are_dead_lettered(store, clock, servers, make_notifier):
    old = servers()
    enqueue(store, make_notifier([sink("old", "webhook", old.url)]), alert(clock, "k-orphan"))
    report = make_notifier([sink("new", "webhook", old.url)]).deliver_due()
    assert report.dead == 1
    [row] = rows(store)
    assert row.status == "dead" and "'old' is not configured" in row.last_error
    assert old.requests == []


def test_two_deliverers_at_once_send_each_row_once(store, clock, servers, make_notifier):
    server = servers(lambda n, _b: (200, 0.02, {}))
    sinks = [sink("hook", "webhook", server.url)]
    first, second = make_notifier(sinks), make_notifier(sinks)
    keys = [f"k{i}" for i in range(12)]
    enqueue(store, first, *(alert(clock, k) for k in keys))
    reports: list = []
    threads = [threading.Thread(target=lambda n=n: reports.append(n.deliver_due())) for n in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(r.sent for r in reports) == 12
    assert server.delivered_keys() == Counter({k: 1 for k in keys})


# --- kill switch, redaction, transactions ----------------------------------------------------------------


def test_pages_are_folded_into_the_kill_switch_alert_while_it_is_engaged(store, clock, servers, make_notifier):
    pd, chat = servers(), servers()
    notifier = make_notifier([sink("pager", "pagerduty", pd.url), sink("chat", "slack", chat.url)])
    kill = alert(clock, KILL_SWITCH_DEDUP_KEY, title="Kill switch engaged by alice", body="reason: runaway restarts")
    breaker = alert(clock, "govcon-breaker-cbe-9")
    with store.write() as conn:
        assert notifier.enqueue(conn, kill, True) == 2       # its own alert still pages
        assert notifier.enqueue(conn, breaker, True) == 1    # positional, as the breaker engine calls it
    notifier.deliver_due()

    assert [p["dedup_key"] for p in pd.delivered()] == [KILL_SWITCH_DEDUP_KEY]
    assert chat.delivered_keys() == Counter({KILL_SWITCH_DEDUP_KEY: 1, "govcon-breaker-cbe-9": 1})
    folded = next(m for m in chat.delivered() if "cbe-9" in json.dumps(m))
    assert FOLDED_NOTE.replace("&", "&amp;") in folded["text"]
    assert "folded into the kill-switch alert" in folded["text"]

    clock.advance(600)  # released: breaker pages page again
    enqueue(store, notifier, alert(clock, "govcon-breaker-cbe-10"), kill_switch_engaged=False)
    notifier.deliver_due()
    assert [p["dedup_key"] for p in pd.delivered()] == [KILL_SWITCH_DEDUP_KEY, "govcon-breaker-cbe-10"]


def test_secrets_never_reach_the_outbox_the_sinks_or_the_log(store, clock, servers, make_notifier, caplog):
    secrets = ["hunter2", "abcdefghijklmnop1234", "k-live-9f8e7d", "s3cr3tpw", "AKIAIOSFODNN7EXAMPLE",
               "ghp_0123456789abcdefghijABCDEFGHIJ012345", "fedcba9876543210fedcba9876543210", "T0001/B0002/XyZ"]
    echo = servers(lambda n, _b: (500, 0.0, {}) if n == 1 else (200, 0.0, {}))
    pd = servers()
    notifier = make_notifier([sink("hook", "webhook", echo.url), sink("pager", "pagerduty", pd.url)])
    caplog.set_level(logging.DEBUG, logger="govcon.alerts")
    leaky = alert(clock, "govcon-breaker-cbe-3",
                  title="deploy failed: password=hunter2",
                  body="curl -H 'Authorization: Bearer abcdefghijklmnop1234' https://ops:s3cr3tpw@db.example.com/x\n"
                       "posted to https://hooks.slack.com/services/T0001/B0002/XyZ",
                  details={"api_key": "k-live-9f8e7d", "env": {"AWS": "AKIAIOSFODNN7EXAMPLE"},
                           "notes": ["token ghp_0123456789abcdefghijABCDEFGHIJ012345",
                                     "rk fedcba9876543210fedcba9876543210"]})
    enqueue(store, notifier, leaky)
    notifier.deliver_due()
    clock.advance(60)
    notifier.deliver_due()

    stored = json.dumps([r.payload for r in rows(store)]) + json.dumps([r.last_error for r in rows(store)])
    received = json.dumps(echo.requests) + json.dumps([b["payload"] for b in pd.delivered()])
    logged = caplog.text
    for secret in secrets + [PD_KEY]:
        assert secret not in stored and secret not in received and secret not in logged, secret
    assert "db.example.com" in received and "ops:[REDACTED]@db.example.com" in logged
    assert echo.delivered()[0]["details"]["api_key"] == "[REDACTED]"
    assert pd.delivered()[0]["routing_key"] == PD_KEY  # added at send time, from config
    assert "hooks.slack.com/services/[REDACTED]" in stored


def test_enqueue_in_a_rolled_back_transaction_leaves_no_row_and_no_log_line(store, clock, servers,
                                                                           make_notifier, caplog):
    hook = servers()
    notifier = make_notifier([sink("hook", "webhook", hook.url)])
    caplog.set_level(logging.INFO, logger="govcon.alerts")
    with pytest.raises(RuntimeError):
        with store.write() as conn:
            assert notifier.enqueue(conn, alert(clock, "k-rolled-back")) == 1
            raise RuntimeError("the trip failed after its alert was queued")
    enqueue(store, notifier, alert(clock, "k-committed"))

    assert [r.dedup_key for r in rows(store)] == ["k-committed"]
    assert "k-rolled-back" not in caplog.text and "k-committed" in caplog.text
    notifier.deliver_due()
    assert hook.delivered_keys() == Counter({"k-committed": 1})


def test_details_that_json_cannot_hold_do_not_break_the_callers_transaction(store, clock, servers, make_notifier):
    hook = servers()
    notifier = make_notifier([sink("hook", "webhook", hook.url)])
    enqueue(store, notifier, alert(clock, "k-odd", details={"rate": float("nan"), "at": clock.now(),
                                                            "types": {"b", "a"}}))
    notifier.deliver_due()
    assert hook.delivered()[0]["details"] == {"rate": "nan", "at": "2026-11-20T12:00:00Z", "types": ["a", "b"]}


# --- through the governance facade: a real trip, its resolution, the kill switch --------------------------


def test_breaker_trips_page_and_resolutions_clear_with_one_dedup_key_through_governance(store, clock, servers):
    from engine.clock import isoformat
    from engine.governance import Governance
    from tests.conftest import OPERATOR, T0

    pd, chat = servers(), servers()
    gov = Governance(store, clock, sinks=[sink("pager", "pagerduty", pd.url), sink("chat", "slack", chat.url)])
    try:
        gov.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
        for role in ("ops-lead", "incident-commander"):
            gov.grant_role(OPERATOR, OPERATOR, role)
        at = isoformat(clock.now() - timedelta(minutes=1))
        gov.ingestor.ingest_objects([{"kind": "command", "id": f"c{i}", "type": "restart_service",
                                      "status": "failed" if i < 2 else "succeeded", "autonomous": True, "at": at}
                                     for i in range(20)])
        [event] = [e for e in gov.breaker_events() if e["ruleName"] == "High Error Rate"]
        gov.notifier.deliver_due()
        key = f"govcon-breaker-{event['id']}"
        assert [(p["event_action"], p["dedup_key"]) for p in pd.delivered()] == [("trigger", key)]
        assert chat.delivered_keys() == Counter({key: 1})

        clock.advance(600)
        gov.breakers.resolve(OPERATOR, event["id"], note="bad deploy rolled back")
        gov.notifier.deliver_due()
        assert [(p["event_action"], p["dedup_key"]) for p in pd.delivered()] == [("trigger", key), ("resolve", key)]

        gov.overrides.engage_kill_switch(OPERATOR, "runaway restarts")
        clock.advance(60)
        gov.ingestor.ingest_objects([{"kind": "incident", "id": "INC-9", "severity": "critical",
                                      "at": isoformat(clock.now() - timedelta(seconds=10))}])
        gov.notifier.deliver_due()
        pages = [p["dedup_key"] for p in pd.delivered()]
        assert pages[2:] == [KILL_SWITCH_DEDUP_KEY]  # the incident trip is folded, not paged again
        folded = [m for m in chat.delivered() if "folded into the kill-switch alert" in m["text"]]
        assert len(folded) == 1 and "govcon-breaker-" in _dedup_key(folded[0])
    finally:
        gov.notifier.close()
