"""The parts of the engine the console uses beyond the core facade, looked up once: a facade built
without them (an older or trimmed engine) makes the panes say "not available" instead of failing."""

from __future__ import annotations

from engine.governance import Governance


class EngineApi:
    def __init__(self, gov: Governance) -> None:
        self.gov = gov
        self.proposals = getattr(gov, "proposals", None)   # ProposalBook: list, show, approve, reject
        self.cycle = getattr(gov, "cycle", None)           # GovernanceCycle: run(actor)
        self.reports = getattr(gov, "reports", None)       # Reports: list(limit)


def make_scheduler(gov: Governance, operator: str):
    """engine.jobs.GovconScheduler holding the lease as ``console:OPERATOR@HOST:PID``, or None without it."""
    try:
        from engine.jobs import GovconScheduler, default_holder
    except ImportError:
        return None
    return GovconScheduler(gov, default_holder("console", operator))
