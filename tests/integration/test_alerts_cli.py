"""`govcon alerts`: the outbox as an operator sees it. A real HTTP sink on 127.0.0.1 refuses alerts
(HTTP 400: dead-lettered at once), the operator lists them, fixes the sink, retries them; each is then
delivered exactly once, and every retry is one audit entry. Both stores."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.notifier import Notifier
from tests.conftest import OPERATOR
from tests.integration.test_alerts import alert, enqueue, servers, sink  # noqa: F401  (servers: fixture)


@pytest.fixture
def refusing_sink(servers):
    answer = {"status": 400}
    server = servers(lambda _n, _body: (answer["status"], 0.0, {}))
    return server, answer


def test_dead_letters_are_listed_then_retried_once_the_sink_is_fixed(gov, cli, me, clock, refusing_sink):
    server, answer = refusing_sink
    notifier = Notifier(gov.store, clock, [sink("hook", "webhook", server.url)])
    try:
        enqueue(gov.store, notifier, alert(clock, "k-1"), alert(clock, "k-2", severity="high"))
        assert notifier.deliver_due().dead == 2

        listed = cli("alerts", "list", "--json").json()
        assert [(a["dedupKey"], a["status"], a["attempts"]) for a in listed] == [("k-2", "dead", 1), ("k-1", "dead", 1)]
        assert listed[0]["lastError"].startswith("HTTP 400") and listed[0]["title"] == "Circuit breaker tripped: k-2"
        text = cli("alerts", "list").out
        assert text.count("DEAD") == 2 and "last error: HTTP 400" in text
        assert cli("alerts", "list", "--status", "sent", "--json").json() == []
        first, second = listed[1]["id"], listed[0]["id"]

        refused = cli("alerts", "retry", "--dead")
        assert refused.code != 0 and "on-call, ops-lead, admin" in refused.err and "Traceback" not in refused.err
        gov.grant_role(OPERATOR, me, "on-call")

        answer["status"] = 200
        retried = cli("alerts", "retry", str(first), "--json")
        assert retried.code == 0, retried.err
        assert [(a["id"], a["status"], a["attempts"]) for a in retried.json()] == [(first, "pending", 0)]
        assert notifier.deliver_due().sent == 1
        again = cli("alerts", "retry", str(first))
        assert again.code != 0 and f"alert {first} is sent, not dead" in again.err
        assert cli("alerts", "retry", "99999").code != 0
        assert cli("alerts", "retry").code != 0

        everything = cli("alerts", "retry", "--dead")
        assert everything.code == 0 and f"alert {second} to hook queued again" in everything.out
        assert notifier.deliver_due().sent == 1
        assert server.delivered_keys() == Counter({"k-1": 1, "k-2": 1})
        assert cli("alerts", "retry", "--dead").out.strip() == "no dead-lettered alerts"
        assert {a["status"] for a in cli("alerts", "list", "--status", "all", "--json").json()} == {"sent"}
    finally:
        notifier.close()
    retries = [e for e in gov.audit_entries() if e["action"] == "alerts.retry"]
    assert [(e["actor"], e["details"]["ids"]) for e in reversed(retries)] == [(me, [first]), (me, [second])]
    assert gov.audit_verify()[1] is None

