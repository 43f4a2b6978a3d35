"""The rules' statuses shown by the dashboard and the rules screen: answered by the engine
(engine/rule_status.py, judged by the breakers' own ``assess``); this module only names them for screens."""

from engine.rule_status import DISABLED, FIRING, INVALID, OK, TOO_FEW, TRIPPED, RuleStatus, rule_statuses

__all__ = ["DISABLED", "FIRING", "INVALID", "OK", "TOO_FEW", "TRIPPED", "RuleStatus", "rule_statuses"]
