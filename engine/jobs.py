"""The scheduler: APScheduler 3.x jobs run by exactly one process per store, the leader.

Leadership is a lease row in the store (holder, expiry), renewed every RENEW seconds and valid for TTL
seconds; a follower takes over once it has expired (within TTL + RENEW, under 30 s). Jobs that run once
per slot (the weekly cycle, snapshots, prune, backup) also claim their slot in ``job_runs``, whose unique
key makes a second run of the same slot impossible even in the moment two processes both think they lead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from engine.alerts import Alert
from engine.audit_anchor import anchor
from engine.clock import isoformat
from storage import jobs_repo, state_repo

if TYPE_CHECKING:
    from engine.audit_anchor import AnchorSettings
    from engine.governance import Governance

log = logging.getLogger("govcon.scheduler")

LEASE = "scheduler"
TTL = timedelta(seconds=20)
RENEW = 5  # seconds


def default_holder(kind: str, operator: str) -> str:
    """e.g. ``console:alice@ops-host:4242`` — who holds the lease, as operators see it."""
    return f"{kind}:{operator}@{socket.gethostname()}:{os.getpid()}"


class GovconScheduler:
    def __init__(self, gov: Governance, holder: str, *, weekly_cycle: str = "fri 16:00", timezone_name: str = "UTC",
                 backup_dir: str | None = None, retention_days: int = 90, tick_seconds: int = 10,
                 audit_anchor: AnchorSettings | None = None) -> None:
        self.gov = gov
        self.audit_anchor = audit_anchor  # engine.audit_anchor.AnchorSettings ([audit] in the config) or None
        self.holder = holder
        self.weekly_cycle = weekly_cycle
        self.timezone_name = timezone_name
        self.backup_dir = backup_dir
        self.retention_days = retention_days
        self.tick_seconds = tick_seconds
        self.is_leader = False
        #: a renewal and a release run one at a time: a release that came while a renewal was between its commit
        #: and setting is_leader would otherwise be overwritten by it (a "leader" with no lease in the store)
        self._lease_lock = threading.Lock()
        self._released = False  # shut down: a renewal still in flight does not take the lease again
        self.scheduler: AsyncIOScheduler | None = None
        self._warned: dict[str, datetime] = {}
        self.runs: list[str] = []  # job ids run by this process (for operators and tests)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start on the running asyncio loop (call from Textual's on_mount or an async main)."""
        self._released = False
        day, hhmm = self.weekly_cycle.split()
        hour, minute = (int(x) for x in hhmm.split(":"))
        s = AsyncIOScheduler(jobstores={"default": MemoryJobStore()}, timezone=self.timezone_name,
                             job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        now = datetime.now(UTC)
        tick = self.tick_seconds
        # The frequent jobs start spread over their interval instead of all at once: each runs in a thread of
        # its own, and six of them at the same instant competed with the gate's threads for the interpreter
        # (a gate answer over the socket took 10-25 ms at those instants: docs/performance.md, sixteenth session)
        s.add_job(self.renew_lease, "interval", seconds=RENEW, id="leader-lease", next_run_time=now)
        s.add_job(self._guard("breaker-tick", self.breaker_tick), "interval", seconds=tick,
                  id="breaker-tick", next_run_time=now + timedelta(seconds=tick * 1.05))
        s.add_job(self._guard("alert-delivery", self.deliver_alerts), "interval", seconds=5, id="alert-delivery",
                  next_run_time=now + timedelta(seconds=5 + RENEW / 2))
        s.add_job(self._guard("proposal-expiry", self.gov.proposals.expire_due), "interval", minutes=5,
                  id="proposal-expiry")
        s.add_job(self._guard("action-expiry", self.expire_actions), "interval", seconds=tick,
                  id="action-expiry", next_run_time=now + timedelta(seconds=tick * 1.3))
        s.add_job(self._guard("breaker-recovery", self.reopen_after_cooldown), "interval",
                  seconds=tick, id="breaker-recovery", next_run_time=now + timedelta(seconds=tick * 1.55))
        s.add_job(self._guard("agent-lapse", self.gov.agents.alert_lapses), "interval", seconds=tick,
                  id="agent-lapse", next_run_time=now + timedelta(seconds=tick * 1.8))
        s.add_job(self._guard("metrics-snapshot", self.snapshot, slot=timedelta(hours=1)), "interval", minutes=10,
                  id="metrics-snapshot", next_run_time=now + timedelta(seconds=RENEW + 1))
        s.add_job(self._guard("readiness-assessment", self.assess, slot=timedelta(hours=6)), "interval",
                  minutes=30, id="readiness-assessment", next_run_time=now + timedelta(seconds=RENEW + 2))
        s.add_job(self._guard("weekly-cycle", self.cycle, slot=timedelta(days=7)),
                  CronTrigger(day_of_week=day, hour=hour, minute=minute, timezone=self.timezone_name),
                  id="weekly-cycle")
        s.add_job(self._guard("retention-prune", self.prune, slot=timedelta(days=1)),
                  CronTrigger(hour=3, minute=30, timezone=self.timezone_name), id="retention-prune")
        if self.audit_anchor is not None and self.audit_anchor.enabled:
            s.add_job(self._guard("audit-anchor", self.anchor_audit), "interval",
                      seconds=self.audit_anchor.interval.total_seconds(), id="audit-anchor",
                      next_run_time=now + timedelta(seconds=RENEW + 3))
        if self.backup_dir and self.gov.store.dialect == "sqlite":
            s.add_job(self._guard("backup", self.backup, slot=timedelta(days=1)),
                      CronTrigger(hour=3, minute=0, timezone=self.timezone_name), id="backup")
        s.start()
        self.scheduler = s

    def shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.release_lease()

    # --- leadership ---------------------------------------------------------------------------

    def renew_lease(self) -> bool:
        with self._lease_lock:
            return self._renew_lease()

    def _renew_lease(self) -> bool:
        now = self.gov.clock.now()
        was = self.is_leader
        if self._released:
            return False
        try:
            with self.gov.store.write() as conn:
                held = state_repo.try_acquire_lease(conn, name=LEASE, holder=self.holder, now=now,
                                                    expires_at=now + TTL)
            self.is_leader = held  # only once committed: a reader must never see a leader the store does not
        except Exception as exc:  # the store is down: we cannot prove leadership, so we do not lead
            log.warning("lease renewal failed: %s", exc)
            self.is_leader = False
        if self.is_leader != was:
            log.info("scheduler %s %s the leader lease", self.holder, "holds" if self.is_leader else "lost",
                     extra={"holder": self.holder, "leader": self.is_leader})
        return self.is_leader

    def release_lease(self) -> None:
        with self._lease_lock:
            self._released = True
            try:
                with self.gov.store.write() as conn:
                    state_repo.release_lease(conn, name=LEASE, holder=self.holder)
            except Exception as exc:
                log.warning("lease release failed: %s", exc)
            self.is_leader = False

    def leader_holder(self) -> str | None:
        with self.gov.store.read() as conn:
            lease = state_repo.get_lease(conn, LEASE)
        return lease.holder if lease and lease.expires_at > self.gov.clock.now() else None

    def _guard(self, job_id: str, fn: Callable[[], Any], *, slot: timedelta | None = None) -> Callable[[], Any]:
        """Run fn only while leading, and for slot jobs only if this slot was not run already."""
        def run() -> Any:
            if not self.is_leader:
                return None
            if slot is not None:
                now = self.gov.clock.now()
                start = datetime.fromtimestamp(now.timestamp() // slot.total_seconds() * slot.total_seconds(),
                                               tz=UTC)
                if not jobs_repo.claim(self.gov.store, job_id=job_id, slot=isoformat(start), holder=self.holder,
                                       now=now):
                    return None
            try:
                result = fn()
                self.runs.append(job_id)
                return result
            except Exception:
                log.exception("scheduled job %s failed", job_id)
                return None
        run.__name__ = job_id
        return run

    # --- the jobs -----------------------------------------------------------------------------

    def breaker_tick(self) -> Any:
        try:  # a kill switch engaged by its marker file goes into the store once the store takes writes
            self.gov.overrides.record_marker()
        except Exception:
            log.warning("the kill switch's marker file could not be recorded in the store yet", exc_info=True)
        return self.gov.breakers.evaluate()

    def reopen_after_cooldown(self) -> Any:
        """Paused types whose rule's cooldown has passed become half-open (engine/recovery.py)."""
        return self.gov.breakers.reopen_after_cooldown()

    def expire_actions(self) -> Any:
        """Grants without an outcome and requests without a decision, past their expiry."""
        return self.gov.actions.expire_due()

    def deliver_alerts(self) -> Any:
        return self.gov.notifier.deliver_due()

    def snapshot(self) -> Any:
        self.gov.metrics.snapshot(timedelta(hours=1))
        self.warn_on_trends()

    def assess(self) -> Any:
        return self.gov.readiness.assess(record=True)

    def cycle(self) -> Any:
        return self.gov.cycle.run("scheduler", system=True)

    def prune(self) -> Any:
        """retention-prune, daily. On PostgreSQL it also keeps command_events' monthly partitions: it
        makes this month's and the next two, and drops the months older than retention whole
        (storage/partitions.py)."""
        return self.gov.prune("scheduler", timedelta(days=self.retention_days), system=True)

    def anchor_audit(self) -> Any:
        """The audit head, out of the store: to the anchor file and/or as a low info alert."""
        if self.audit_anchor is None:  # scheduled only when [audit] anchoring is configured
            return None
        return anchor(self.gov, self.audit_anchor)

    def backup(self) -> Any:
        if self.backup_dir is None:  # scheduled only with a backup directory
            return None
        now = self.gov.clock.now()
        target = Path(self.backup_dir) / f"governance-{now:%Y%m%d}.db"
        if not target.exists():
            self.gov.backup(target)

    def warn_on_trends(self) -> list[dict]:
        """Raise a low-severity early warning when a rate is predicted to cross a breaker threshold."""
        report = self.gov.trend_report()
        now = self.gov.clock.now()
        raised = []
        for p in report["predictions"]:
            key = f"{p['rule']}:{p['metric']}"
            last = self._warned.get(key)
            if last is not None and now - last < timedelta(hours=6):
                continue
            self._warned[key] = now
            with self.gov.store.write(serialise=False) as conn:
                self.gov.notifier.enqueue(conn, Alert(
                    kind="info", severity="low", title=f"Early warning: {p['metric']} heading for '{p['rule']}'",
                    body=f"{p['metric']} {p['latest']:.4f}, trend {p['slopePerHour']:+.4f}/h; predicted to cross "
                         f"{p['op']} {p['threshold']} at {p['predictedCrossing']}",
                    dedup_key=f"govcon-trend-{key}", at=now, details=p))
            raised.append(p)
        return raised


def run_headless(gov: Governance, holder: str, *, stop_after: float | None = None, **kwargs: Any) -> None:
    """Run the scheduler without a console (``govcon scheduler``) until SIGTERM/SIGINT."""
    async def main() -> None:
        sched = GovconScheduler(gov, holder, **kwargs)
        sched.start()
        log.info("scheduler %s started on %s", holder, gov.store.display_url, extra={"holder": holder})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            if stop_after is None:
                await stop.wait()
            else:
                try:
                    await asyncio.wait_for(stop.wait(), stop_after)
                except TimeoutError:
                    pass
        finally:
            sched.shutdown()
            await asyncio.sleep(0)
    asyncio.run(main())
