"""`govcon readiness --explain` and the facts behind it (engine/readiness_explain.py) on both stores: counts
read from the store, the numbers computed by hand."""

from __future__ import annotations

import json
from datetime import timedelta

from engine.clock import isoformat
from engine.governance import Governance
from engine.readiness_explain import ReadinessExplainer
from storage import state_repo
from tests.conftest import T0


def _history(gov, clock) -> None:
    """30 days back from T0: 163 succeeded (4 of them then rolled back) and 1 failed command; 100 proposed,
    70 of them approved; a critical incident naming a command 4 days ago; eval coverage 45/50; and a
    reversion to L3 100 days ago (the time at L3 counts from it)."""
    at = isoformat(T0 - timedelta(days=2))
    events = [{"kind": "command", "id": f"s{i}", "type": "restart_service", "status": "succeeded",
               "autonomous": True, "at": at} for i in range(163)]
    events += [{"kind": "command", "id": f"s{i}", "type": "restart_service", "status": "rolled_back",
                "autonomous": True, "at": at} for i in range(4)]
    events.append({"kind": "command", "id": "f0", "type": "restart_service", "status": "failed", "autonomous": True,
                   "at": at})
    events += [{"kind": "command", "id": f"p{i}", "type": "scale_up", "status": "proposed", "autonomous": False,
                "at": at} for i in range(100)]
    events += [{"kind": "command", "id": f"p{i}", "type": "scale_up", "status": "approved", "autonomous": False,
                "at": at} for i in range(70)]
    events.append({"kind": "incident", "id": "inc-9", "severity": "critical", "command_id": "f0",
                   "at": isoformat(T0 - timedelta(days=4))})
    events.append({"kind": "eval_coverage", "covered": 45, "total": 50, "at": isoformat(T0 - timedelta(days=1))})
    report = Governance(gov.store, clock, evaluate_on_ingest=False).ingestor.ingest_objects(events)
    assert report.rejected == 0, report.to_json()
    with gov.store.write() as conn:
        state_repo.start_phase(conn, phase="L3", at=T0 - timedelta(days=100), actor="bob", reason="manual revert")


def test_explain_reads_the_counts_and_computes_each_missing_point(gov, clock):
    _history(gov, clock)
    doc, ex = ReadinessExplainer(gov).explain()
    by = {m["name"]: m for m in ex["missing"]}
    assert by["6+ months running at L3"]["needs"] == {"days": 82}
    assert by["6+ months running at L3"]["when"] == isoformat(T0 + timedelta(days=82))
    assert by["Command success rate >99.5%"]["needs"] == {"successfulCommands": 37, "succeeded": 163, "failed": 1}
    assert by["Command approval rate >80%"]["needs"] == {"approvedCommands": 51, "approved": 70, "proposed": 100}
    assert by["Rollback rate <2%"]["needs"] == {"successfulCommands": 38, "rolledBack": 4, "succeeded": 163}
    assert by["Eval coverage >90%"]["needs"] == {"covered": 46, "total": 50, "reported": 45}
    assert by["Zero critical incidents from commands"]["when"] == isoformat(T0 + timedelta(days=26))
    assert by["Kill switch tested"]["command"] == "govcon kill-switch drill"
    assert ex["points"] == doc["overall"]["points"] and ex["possible"] == 80
    for m in ex["missing"]:
        assert m["scoreIfPassed"] == round((ex["points"] + m["weight"]) / 80, 4)


def test_cli_readiness_explain_text_and_json(cli, gov, clock):
    _history(gov, clock)
    text = cli("readiness", "--explain")
    assert text.code == 0, text.err
    out = text.out
    assert "Why not ready" in out
    assert "  to earn it: 37 more successful commands with no further failure (now 163 succeeded, 1 failed in " \
           "30 days; needs > 99.5%)" in out
    assert "  to earn it: 51 more proposed commands approved, none rejected" in out
    assert f"  to earn it: time: passes on {T0 + timedelta(days=82):%Y-%m-%d} (82 more days)" in out
    assert "  run: govcon kill-switch drill" in out
    plain = cli("readiness")
    assert plain.code == 0 and "Why not ready" not in plain.out and out.startswith(plain.out.rstrip("\n"))

    js = cli("readiness", "--explain", "--json")
    assert js.code == 0
    doc = json.loads(js.out)
    assert {"overall", "technical", "process", "organizational", "explain"} <= set(doc)
    names = [m["name"] for m in doc["explain"]["missing"]]
    assert names[0] == "6+ months running at L3"  # required and heaviest first
    assert all(doc["explain"]["missing"][i]["required"] >= doc["explain"]["missing"][i + 1]["required"]
               for i in range(len(names) - 1))
