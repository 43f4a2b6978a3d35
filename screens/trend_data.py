"""The dashboard's trend series: answered by the engine (engine/trends.py: hourly rates as the contract
defines them, readiness history and its forecast); this module only names them for screens."""

from engine.trends import RATE_SPAN, RATE_STEP, READINESS_SPAN, TrendData, load_trends, readiness_prediction

__all__ = ["RATE_SPAN", "RATE_STEP", "READINESS_SPAN", "TrendData", "load_trends", "readiness_prediction"]
