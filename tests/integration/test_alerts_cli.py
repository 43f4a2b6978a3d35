"""`govcon alerts`: the outbox as an operator sees it. A real HTTP sink on 127.0.0.1 refuses alerts
(HTTP 400: dead-lettered at once), the operator lists them, fixes the sink, retries or dismisses them;
each retried one is then delivered exactly once, a trigger whose resolve went out since is never re-sent,
and every change is one audit entry. Both stores."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from engine.notifier import Notifier
from storage import maintenance
from tests.conftest import OPERATOR
from tests.integration.test_alerts import alert, enqueue, servers, sink  # noqa: F401  (servers: fixture)


@pytest.fixture
def hook(gov, clock, servers):
    """A webhook that answers 400 until ``answer['status']`` is changed; its notifier."""
    answer = {"status": 400}
    server = servers(lambda _n, _body: (answer["status"], 0.0, {}))
    notifier = Notifier(gov.store, clock, [sink("hook", "webhook", server.url)])
    yield server, answer, notifier
    notifier.close()


def test_dead_letters_are_listed_then_retried_once_the_sink_is_fixed(gov, cli, me, clock, hook):
    server, answer, notifier = hook
    enqueue(gov.store, notifier, alert(clock, "k-1"), alert(clock, "k-2", severity="high"))
    assert notifier.deliver_due().dead == 2

    listed = cli("alerts", "list", "--json").json()
    assert [(a["dedupKey"], a["status"], a["attempts"]) for a in listed] == [("k-2", "dead", 1), ("k-1", "dead", 1)]
    assert listed[0]["lastError"].startswith("HTTP 400") and listed[0]["title"] == "Circuit breaker tripped: k-2"
    text = cli("alerts", "list").out
    assert text.count("DEAD") == 2 and "last error: HTTP 400" in text and "Circuit breaker tripped: k-1" in text
    assert cli("alerts", "list", "--status", "sent", "--json").json() == []
    first, second = listed[1]["id"], listed[0]["id"]

    refused = cli("alerts", "retry", "--dead")
    assert refused.code == 5 and "on-call, ops-lead, admin" in refused.err and "Traceback" not in refused.err
    gov.grant_role(OPERATOR, me, "on-call")

    answer["status"] = 200
    retried = cli("alerts", "retry", str(first), "--json")
    assert retried.code == 0, retried.err
    assert [(a["id"], a["status"], a["attempts"]) for a in retried.json()["changed"]] == [(first, "pending", 0)]
    assert notifier.deliver_due().sent == 1
    again = cli("alerts", "retry", str(first))
    assert again.code == 2 and f"alert {first} is sent, not dead" in again.err
    unknown = cli("alerts", "retry", "99999")
    assert unknown.code == 1 and "no alert 99999" in unknown.err
    huge = cli("alerts", "retry", "99999999999999999999")  # beyond the id column: named, no traceback
    assert huge.code == 2 and "does not exist" in huge.err and "Traceback" not in huge.err

    everything = cli("alerts", "retry", "--dead")
    assert everything.code == 0
    assert f"alert {second} to hook queued again (high trigger: Circuit breaker" in everything.out
    assert notifier.deliver_due().sent == 1
    assert server.delivered_keys() == Counter({"k-1": 1, "k-2": 1})
    assert cli("alerts", "retry", "--dead").out.strip() == "no dead-lettered alerts"
    assert {a["status"] for a in cli("alerts", "list", "--status", "all", "--json").json()} == {"sent"}
    retries = [e for e in gov.audit_entries() if e["action"] == "alerts.retry"]
    assert [(e["actor"], e["details"]["ids"]) for e in reversed(retries)] == [(me, [first]), (me, [second])]
    assert gov.audit_verify()[1] is None


def test_a_trigger_whose_resolve_went_out_since_is_never_re_sent_only_dismissed(gov, cli, me, clock, hook):
    server, answer, notifier = hook
    gov.grant_role(OPERATOR, me, "ops-lead")
    enqueue(gov.store, notifier, alert(clock, "ks"))            # the trigger: refused (a wrong key, say)
    notifier.deliver_due()
    answer["status"] = 200                                       # fixed; the incident ends meanwhile
    clock.advance(60)
    enqueue(gov.store, notifier, alert(clock, "ks", kind="resolve"))
    assert notifier.deliver_due().sent == 1
    [trigger] = cli("alerts", "list", "--json").json()
    assert trigger["superseded"] and "DEAD (superseded by its resolve)" in cli("alerts", "list").out

    refused = cli("alerts", "retry", str(trigger["id"]))
    assert refused.code == 2 and "superseded" in refused.err and "dismiss" in refused.err
    skipped = cli("alerts", "retry", "--dead")
    assert skipped.code == 0 and "left dead: its resolve was sent since" in skipped.out
    notifier.deliver_due()
    assert [b["kind"] for b in server.delivered()] == ["resolve"]  # no trigger after its resolve

    no_reason = cli("alerts", "dismiss", str(trigger["id"]), "--reason", " ")
    assert no_reason.code == 2 and "--reason" in no_reason.err
    dismissed = cli("alerts", "dismiss", "--dead", "--reason", "kill switch already released")
    assert dismissed.code == 0 and f"alert {trigger['id']} to hook dismissed" in dismissed.out
    assert cli("alerts", "list", "--json").json() == []
    entry = gov.audit_entries(limit=1)[0]
    assert entry["action"] == "alerts.dismiss" and entry["details"] == {
        "ids": [trigger["id"]], "sinks": ["hook"], "reason": "kill switch already released"}



def test_retention_keeps_dead_alerts_and_the_resolves_that_supersede_them(gov, cli, me, clock, hook):
    server, answer, notifier = hook
    gov.grant_role(OPERATOR, me, "on-call")
    enqueue(gov.store, notifier, alert(clock, "old-dead"), alert(clock, "ks"))  # both refused: dead
    notifier.deliver_due()
    answer["status"] = 200
    enqueue(gov.store, notifier, alert(clock, "ks", kind="resolve"), alert(clock, "other"))
    assert notifier.deliver_due().sent == 2                    # the resolve of ks, and another alert
    clock.advance(timedelta(days=100))                         # all four are now past retention
    with gov.store.write() as conn:
        removed = maintenance.prune(conn, clock.now() - timedelta(days=90))
    assert removed["alert_outbox"] == 1                        # only the unrelated sent alert
    left = {(a["dedupKey"], a["kind"], a["status"], a["superseded"])
            for a in cli("alerts", "list", "--status", "all", "--json").json()}
    assert left == {("old-dead", "trigger", "dead", False), ("ks", "trigger", "dead", True),
                    ("ks", "resolve", "sent", False)}
    assert cli("alerts", "retry", "--dead").code == 0
    notifier.deliver_due()
    assert Counter(b["dedup_key"] for b in server.delivered() if b["kind"] == "trigger") == Counter(
        {"other": 1, "old-dead": 1})                           # the ks trigger never went out after its resolve


def test_list_refuses_a_limit_below_one(cli, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli("alerts", "list", "--limit", "0")
    assert exit_.value.code == 2 and "--limit: must be at least 1, not 0" in capsys.readouterr().err


def test_the_http_api_lists_retries_and_dismisses_like_the_cli(gov, clock, hook):
    """GET /api/alerts, POST /api/alerts/retry and /dismiss: the same book, token operator as actor."""
    from tests.integration.test_api import make_api
    server, answer, notifier = hook
    gov.grant_role(OPERATOR, "dave", "on-call")
    enqueue(gov.store, notifier, alert(clock, "k-1"), alert(clock, "k-2"))
    notifier.deliver_due()
    api = make_api(gov)
    with api.client:
        listed = api.get("/api/alerts").json()
        assert [(a["dedupKey"], a["status"]) for a in listed] == [("k-2", "dead"), ("k-1", "dead")]
        assert api.get("/api/alerts", params={"status": "sent"}).json() == []
        assert api.get("/api/alerts", params={"status": "lost"}).status_code == 422
        first, second = listed[1]["id"], listed[0]["id"]
        assert api.post("/api/alerts/retry", json={"ids": [first]}, headers=api.auth("carol")).status_code == 403
        both = api.post("/api/alerts/retry", json={"ids": [first], "dead": True}, headers=api.auth("dave"))
        assert both.status_code == 422 and "not both" in both.json()["detail"]
        answer["status"] = 200
        retried = api.post("/api/alerts/retry", json={"ids": [first]}, headers=api.auth("dave"))
        assert retried.status_code == 200 and [a["id"] for a in retried.json()["changed"]] == [first]
        no_reason = api.post("/api/alerts/dismiss", json={"dead": True}, headers=api.auth("dave"))
        assert no_reason.status_code == 422 and "--reason" in no_reason.json()["detail"]
        gone = api.post("/api/alerts/dismiss", json={"dead": True, "reason": "sent by hand"}, headers=api.auth("dave"))
        assert gone.status_code == 200 and [a["id"] for a in gone.json()["changed"]] == [second]
    assert notifier.deliver_due().sent == 1 and server.delivered_keys() == Counter({"k-1": 1})
    assert [(e["action"], e["actor"]) for e in gov.audit_entries() if e["action"].startswith("alerts.")] == [
        ("alerts.dismiss", "dave"), ("alerts.retry", "dave")]
