"""`govcon demo`: the console on a scratch store with six months of history and a live simulated agent.

The store is built in a few seconds: history goes in through the ingestor with the breakers not judging
(a governance built with evaluate_on_ingest=False: backfilled history never trips a breaker), the
attestations and a kill-switch drill are made at their own times in the past, and a readiness
assessment is recorded each week, so the readiness plot has a history. Then the console opens on a
normal governance, and an AgentSimulator sends about one command a second through the ingestor (the
breakers judge them), with a scripted incident after 90 seconds that trips them.

The operator holds every role in the scratch store and four-eyes is relaxed there (the console says
so), so the whole loop can be tried alone: cycle (c), approve (a), trip, alert, resolve (r).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from console.app import make_app
from engine.clock import Clock, ManualClock, SystemClock
from engine.domain import ROLES
from engine.errors import InvalidInput
from engine.governance import Governance
from engine.readiness import ALL_ITEMS
from engine.simulator import AgentSimulator, generate_history
from storage.store import Store

HISTORY_DAYS = 182
COMMANDS_PER_HOUR = 10          # ~145,000 events: loads in a few seconds
INCIDENT_AFTER = timedelta(seconds=90)
BURST_TYPE = "restart_service"
CLEAN_MONTH = timedelta(days=31)  # no critical incident in the last month, so readiness can reach 95%
CLEAN_TYPES = ("clear_cache", "rotate_logs")  # the month's clean record makes them whitelist candidates
QUIET_WINDOWS = timedelta(minutes=20)  # history stops before the breakers' windows: the live agent fills them


def _history(now: datetime, seed: int) -> Iterator[dict]:
    """Generated history, with a clean last month for the whitelist candidates (no failure, no incident
    naming them) and no critical incident at all, so the governance cycle can propose an expansion."""
    types: dict[str, str] = {}
    for event in generate_history(now - timedelta(days=HISTORY_DAYS), now - QUIET_WINDOWS,
                                  commands_per_hour=COMMANDS_PER_HOUR, seed=seed):
        recent = datetime.fromisoformat(event["at"].replace("Z", "+00:00")) > now - CLEAN_MONTH
        if event["kind"] == "command":
            types[event["id"]] = event["type"]
            if recent and event["type"] in CLEAN_TYPES and event["status"] == "failed":
                event = {**event, "status": "succeeded"}
        elif event["kind"] == "incident" and recent:
            if event["severity"] == "critical":
                continue
            if types.get(event.get("command_id", "")) in CLEAN_TYPES:
                event = {k: v for k, v in event.items() if k != "command_id"}
        yield event


def build_demo_store(url: str, operator: str, *, clock: Clock | None = None, seed: int = 42) -> Governance:
    """Create and fill the scratch store; returns the live Governance (breakers judge on ingest)."""
    clock = clock or SystemClock()
    now = clock.now()
    store = Store(url)
    loader = Governance(store, clock, evaluate_on_ingest=False)
    loader.init_store(operator, phase_started=now - timedelta(days=200),
                      extra_roles=tuple(r for r in ROLES if r != "admin"), four_eyes_relaxed=True)
    loader.ingestor.ingest_objects(_history(now, seed))
    _past(store, operator, now)
    return Governance(store, clock)


def _past(store: Store, operator: str, now: datetime) -> None:
    """Attest the checklist one item a week, drill the kill switch, record a weekly assessment."""
    past = ManualClock(now - timedelta(weeks=22))
    gov = Governance(store, past, evaluate_on_ingest=False)
    todo = [i for i in ALL_ITEMS if i.decided_by == "attestation"]
    for week in range(22):
        past.set(now - timedelta(weeks=22 - week))
        if todo and week >= 4:
            item = todo.pop(0)
            gov.attest(operator, item.name, passed=True, evidence=f"demo: {item.slug}.md reviewed",
                       valid_for=timedelta(days=365))
        if week == 19:
            gov.overrides.drill(operator, gov.gate)
        gov.readiness.assess(record=True)


class LiveAgent:
    """The simulated agent: each step sends what became due since the last one through the ingestor."""

    def __init__(self, gov: Governance, *, seed: int = 7, incident_after: timedelta = INCIDENT_AFTER) -> None:
        self.gov = gov
        self.sim = AgentSimulator(seed=seed, commands_per_second=1.0)
        self.sim.script_failure_burst(gov.clock.now() + incident_after, BURST_TYPE, n=25)
        self._lock = threading.Lock()
        self.sent = 0

    def step(self) -> None:
        with self._lock:  # next_events needs calls in time order, one at a time
            events = self.sim.next_events(self.gov.clock.now())
            if events:
                self.sent += self.gov.ingestor.ingest_objects(events).accepted


def run_demo(operator: str, path: str | None = None) -> int:
    scratch = None
    if path is None:
        scratch = Path(tempfile.mkdtemp(prefix="govcon-demo-"))
        target = scratch / "demo.db"
    else:
        target = Path(path).expanduser()
        if target.exists():
            raise InvalidInput(f"--path {target} exists already: the demo builds a new store (remove it or "
                               "choose another path; open an existing store with `govcon --database-url`)")
    print(f"govcon demo: building a scratch store at {target} with {HISTORY_DAYS} days of history…",
          file=sys.stderr, flush=True)
    gov = build_demo_store(str(target), operator)
    app = make_app(gov, operator=operator, demo=True)
    app.add_background_job("demo-agent", LiveAgent(gov).step)
    try:
        app.run()
    finally:
        gov.store.dispose()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if path is not None:
        print(f"govcon demo: the store stays at {target}", file=sys.stderr)
    return 0
