"""Writes docs/deploy/grafana/dashboards/autonomy-governance.json (uid autonomy-governance), the dashboard
the runbook's morning check opens. Run it after changing a panel; tests/integration/test_monitoring_files.py
checks that every metric a query names exists in a real /metrics scrape."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs/deploy/grafana/dashboards/autonomy-governance.json"
DS = {"type": "prometheus", "uid": "${datasource}"}


def target(expr: str, legend: str = "", ref: str = "A") -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(pid: int, title: str, kind: str, grid: tuple[int, int, int, int], targets: list[dict], *,
          unit: str | None = None, description: str = "", mappings: list | None = None,
          thresholds: list | None = None, minmax: tuple[float, float] | None = None) -> dict:
    x, y, w, h = grid
    defaults: dict = {}
    if unit:
        defaults["unit"] = unit
    if mappings:
        defaults["mappings"] = mappings
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
        defaults["color"] = {"mode": "thresholds"}
    if minmax:
        defaults["min"], defaults["max"] = minmax
    return {"id": pid, "type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": {}}


def value_map(values: dict[str, tuple[str, str]]) -> list:
    return [{"type": "value", "options": {k: {"text": text, "color": color} for k, (text, color) in values.items()}}]


GREEN, RED, ORANGE = "green", "red", "orange"
PANELS = [
    panel(1, "Phase", "stat", (0, 0, 4, 4), [target('max by (phase) (simcorp_governance_phase) == 1', "{{phase}}")],
          description="the current autonomy phase (L3 = human approval)", ),
    panel(2, "Kill switch", "stat", (4, 0, 4, 4), [target("max(simcorp_governance_kill_switch_engaged)")],
          mappings=value_map({"0": ("released", GREEN), "1": ("ENGAGED", RED)})),
    panel(3, "Mode", "stat", (8, 0, 4, 4), [target('max by (mode) (simcorp_governance_mode) == 1', "{{mode}}")]),
    panel(4, "Unresolved breaker events", "stat", (12, 0, 4, 4),
          [target("sum by (severity) (simcorp_governance_unresolved_breaker_events)", "{{severity}}")],
          thresholds=[{"color": GREEN, "value": None}, {"color": RED, "value": 1}]),
    panel(5, "Readiness (overall)", "gauge", (16, 0, 4, 4),
          [target('max(simcorp_governance_readiness_score{category="overall"})')], unit="percentunit", minmax=(0, 1)),
    panel(6, "Scheduler leader", "stat", (20, 0, 4, 4), [target("max(simcorp_governance_scheduler_leader_alive)")],
          mappings=value_map({"0": ("NONE", RED), "1": ("alive", GREEN)})),
    panel(7, "Success and error rate (24 h window)", "timeseries", (0, 4, 12, 8),
          [target('simcorp_governance_command_rate{rate="successRate"}', "success", "A"),
           target('simcorp_governance_command_rate{rate="errorRate"}', "error", "B")], unit="percentunit",
          description="runbook thresholds: success ≥ 99.5 %, error ≤ 0.5 %"),
    panel(8, "Readiness by checklist", "timeseries", (12, 4, 12, 8),
          [target("simcorp_governance_readiness_score", "{{category}}")], unit="percentunit", minmax=(0, 1)),
    panel(9, "Breaker trips per rule (increase over 1 h)", "timeseries", (0, 12, 12, 8),
          [target("increase(simcorp_governance_breaker_trips[1h])", "{{rule}}")]),
    panel(10, "Gate decisions per second", "timeseries", (12, 12, 12, 8),
          [target("sum by (decision) (rate(simcorp_governance_gate_decisions_total[5m]))", "{{decision}}")],
          unit="reqps"),
    panel(11, "Gate p99 latency", "timeseries", (0, 20, 8, 8),
          [target("histogram_quantile(0.99, sum by (le) "
                  "(rate(simcorp_governance_gate_request_duration_seconds_bucket[5m])))", "p99")], unit="s"),
    panel(12, "Grants in flight and requests waiting", "timeseries", (8, 20, 8, 8),
          [target("simcorp_governance_grants_in_flight", "grants in flight", "A"),
           target("simcorp_governance_pending_action_requests", "requests waiting", "B")]),
    panel(13, "Alert outbox", "timeseries", (16, 20, 8, 8),
          [target("simcorp_governance_alert_outbox", "{{status}}")],
          description="dead = given up on: someone was not paged (govcon alerts list --dead)"),
    panel(14, "Commands per status (24 h window)", "bargauge", (0, 28, 12, 6),
          [target("simcorp_governance_commands", "{{status}}")]),
    panel(15, "Ingest: events per second by result", "timeseries", (12, 28, 12, 6),
          [target("sum by (result) (rate(simcorp_governance_ingest_events_total[5m]))", "{{result}}")]),
]

DASHBOARD = {
    "uid": "autonomy-governance",
    "title": "Autonomy governance",
    "tags": ["govcon"],
    "timezone": "utc",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-24h", "to": "now"},
    "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                             "label": "Prometheus"}]},
    "panels": PANELS,
}

if __name__ == "__main__":
    OUT.write_text(json.dumps(DASHBOARD, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")
