"""Evidence for the seeded open event (seed.OPEN_EVENT, Repeated Command Failures on restart_service,
tripped at T0-3m over 5m): four failed restart_service commands and an incident naming one of them,
each stored when it happened — what the drill-down names (the seed's own history was stored at T0, after
the trip, so it is not what made it trip)."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.clock import isoformat
from engine.governance import Governance
from tests.pilot.seed import T0

TRIP = T0 - timedelta(minutes=3)
FAILED = [f"cmd-dd-{i}" for i in range(1, 5)]


def add_drilldown_evidence(gov: Governance) -> None:
    clock = gov.clock
    quiet = Governance(gov.store, clock, evaluate_on_ingest=False)
    events = [{"kind": "command", "id": cid, "type": "restart_service", "status": "failed", "autonomous": True,
               "service": "api", "at": isoformat(TRIP - timedelta(minutes=4) + timedelta(seconds=50 * i))}
              for i, cid in enumerate(FAILED)]
    events.append({"kind": "incident", "id": "inc-dd-1", "severity": "high", "command_id": FAILED[2],
                   "service": "api", "at": isoformat(TRIP - timedelta(seconds=90))})
    now = clock.now()
    for e in events:
        clock.set(datetime.fromisoformat(e["at"].replace("Z", "+00:00")))
        quiet.ingestor.ingest_objects([e])
    clock.set(now)
