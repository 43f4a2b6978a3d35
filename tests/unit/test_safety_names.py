"""One home for the safety-event names (issue 17 pt 2): the stored types, the names metrics documents
use, and the ``safety.*`` names rule conditions know all come from engine.domain."""

from __future__ import annotations

from engine.domain import SAFETY_METRIC_TYPES, SAFETY_NAMES, SAFETY_TYPES, safety_totals
from engine.metrics import AutonomyMetrics, CommandCounts
from engine.rule_language import NAMES


def test_every_stored_safety_type_has_one_name_and_one_rule_metric():
    assert tuple(SAFETY_NAMES) == SAFETY_TYPES
    assert {n for n in NAMES if n.startswith("safety.")} == set(SAFETY_METRIC_TYPES)
    assert sorted(SAFETY_METRIC_TYPES.values()) == sorted(SAFETY_TYPES)


def test_totals_name_every_type_and_count_only_its_own():
    raw = {"constraint_violation": 3, "safety_gate_trigger": 1, "not_a_safety_type": 9}
    assert safety_totals(raw) == {"constraintViolations": 3, "emergencyAborts": 0, "safetyGateTriggers": 1}
    assert safety_totals(raw, "safety.") == {"safety.constraintViolations": 3, "safety.emergencyAborts": 0,
                                             "safety.safetyGateTriggers": 1}


def test_metrics_document_uses_the_shared_names():
    from datetime import UTC, datetime
    at = datetime(2026, 1, 1, tzinfo=UTC)
    doc = AutonomyMetrics(at, at, CommandCounts(), {}, {"emergencyAborts": 2}).to_json()
    assert doc["safety"] == {"constraintViolations": 0, "emergencyAborts": 2, "safetyGateTriggers": 0}
