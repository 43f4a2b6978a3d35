"""The monitoring files govcon ships (docs/deploy/): Prometheus alerting rules checked and unit-tested by
promtool, and a Grafana dashboard whose every query names metrics (and label values) that a real
/metrics scrape of govcon serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from engine.clock import isoformat
from tests.integration.test_api import make_api
from tests.integration.test_governed_actions import agov, at_l4  # noqa: F401 - the fixture

DEPLOY = Path(__file__).resolve().parents[2] / "docs/deploy"
RULES = DEPLOY / "prometheus-rules.yml"
DASHBOARD = DEPLOY / "grafana/dashboards/autonomy-governance.json"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (apt-get install prometheus)")
SELECTOR = re.compile(r"\b(simcorp_governance_[a-z0-9_]+)(\{[^}]*\})?")
LABEL = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


@needs_promtool
def test_the_rules_pass_promtool_check_and_their_unit_tests():
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", "prometheus-rules.test.yml"], cwd=DEPLOY,
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def scrape(gov) -> list[tuple[str, dict[str, str]]]:
    """(sample name, labels) of every sample of a real scrape after some traffic: events in the window, a
    gate ask, an ingest through the API."""
    api = make_api(gov)
    now = gov.clock.now()
    with api.client:
        token = api.auth("bob")
        events = [{"kind": "command", "id": f"c{i}", "type": "restart_service", "status": "succeeded",
                   "autonomous": True, "at": isoformat(now - timedelta(minutes=i + 1))} for i in range(5)]
        assert api.post("/api/events", json=events, headers=token).status_code == 200
        assert api.post("/api/gate", json={"commandType": "rotate_logs", "confidence": 0.99}).status_code == 200
        text = api.get("/metrics").text
    samples = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels = dict(LABEL.findall(rest.partition("}")[0])) if rest else {}
            samples.append((name.split(" ")[0], labels))
    return samples


def selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    return [(name, dict(LABEL.findall(labels or ""))) for name, labels in SELECTOR.findall(expr)]


def expressions() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    found = [(f"dashboard panel {p['title']!r}", t["expr"]) for p in board["panels"] for t in p["targets"]]
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        found += [(f"rule {r['alert']}", r["expr"]) for r in group["rules"]]
    return found


def test_every_metric_a_query_names_is_in_a_real_scrape(agov):
    samples = scrape(agov)
    missing = []
    for where, expr in expressions():
        for name, wanted in selectors(expr):
            if not any(n == name and all(labels.get(k) == v for k, v in wanted.items()) for n, labels in samples):
                missing.append(f"{where}: {name}{wanted or ''}")
    assert not missing, "queries name series that /metrics does not serve:\n" + "\n".join(missing)
    assert len({name for _, e in expressions() for name, _ in selectors(e)}) >= 15  # the check looked at them


def test_the_dashboard_is_the_one_the_runbook_opens():
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "autonomy-governance"
    runbook = (Path(__file__).resolve().parents[2] / "docs/runbook.md").read_text()
    assert "/d/autonomy-governance" in runbook
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for shown in ("phase", "kill switch", "mode", "breaker trips", "rate", "readiness", "grants", "requests",
                  "outbox"):
        assert shown in titles, shown
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_file_is_what_the_generator_writes(tmp_path):
    from tools import grafana_dashboard
    assert json.loads(DASHBOARD.read_text()) == json.loads(json.dumps(grafana_dashboard.DASHBOARD))


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed (apt-get install prometheus-alertmanager)")
def test_the_alertmanager_receiver_passes_amtool():
    checked = subprocess.run(["amtool", "check-config", str(DEPLOY / "alertmanager-receiver.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "/api/integrations/alertmanager" in (DEPLOY / "alertmanager-receiver.yml").read_text()
