"""The governance cycle (weekly, and on demand): metrics, readiness, recommendation, report, proposal."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from engine import access
from engine.alerts import report_alert
from engine.breakers import event_json
from engine.clock import Clock, isoformat
from engine.errors import NotInitialised
from engine.metrics import collect_in
from engine.proposals import ProposalBook, draft, proposal_json, proposal_row
from engine.readiness import ReadinessAssessor, assess_in
from engine.report_markdown import render
from storage import audit, breaker_repo, proposals_repo, readiness_repo, reports_repo, state_repo
from storage.store import Store

WEEK = timedelta(days=7)


class GovernanceCycle:
    def __init__(self, store: Store, clock: Clock, readiness: ReadinessAssessor, proposals: ProposalBook, *,
                 enqueue_alert: Callable[..., Any] | None = None) -> None:
        self.enqueue_alert = enqueue_alert  # the report goes to the report sinks (mail) through the outbox
        self.store = store
        self.clock = clock
        self.readiness = readiness
        self.proposals = proposals

    def run(self, actor: str, *, system: bool = False) -> dict[str, Any]:
        """Run one cycle as ``actor`` (any role; ``system`` for the scheduler); returns the GovernanceReport."""
        now = self.clock.now()
        with self.store.write() as conn:
            if not system:
                access.require_role(conn, actor, "cycle")
            state = state_repo.get_state(conn)
            if state is None:
                raise NotInitialised()
            readiness = assess_in(conn, now, self.readiness.policy)
            metrics = collect_in(conn, now - WEEK, now).to_json()
            previous = collect_in(conn, now - 2 * WEEK, now - WEEK).to_json()
            week_events = [event_json(e) for e in breaker_repo.list_events(conn, since=now - WEEK)
                           if not e.shadow]
            unresolved = breaker_repo.count_unresolved(conn)
            pending = proposals_repo.count_pending(conn)
            proposal, note = None, None
            engaged = self.proposals.kill_switch_engaged(state)
            if readiness.recommendation == "expand_scope" and readiness.ready and not unresolved and not pending \
                    and engaged is None:
                proposal_id, _choices, note = draft(conn, now=now, actor=actor, state=state, readiness=readiness,
                                                    metrics_json=collect_in(conn, now - self.proposals.policy.lookback,
                                                                            now).to_json(),
                                                    policy=self.proposals.policy)
                if proposal_id:
                    proposal = proposal_json(proposal_row(conn, proposal_id), [])
            else:
                note = (f"the kill switch is engaged ({engaged})" if engaged is not None else
                        "a proposal is pending already" if pending else
                        f"{unresolved} unresolved circuit-breaker events" if unresolved else
                        "readiness below 95% or blockers remain" if not readiness.ready else
                        f"recommendation is {readiness.recommendation}")
            reversions = [{"at": isoformat(r.started_at), "proposalId": r.proposal_id,
                           "breakerEventId": r.breaker_event_id}
                          for r in reports_repo.reversions_during_validation(conn, now - WEEK)]
            # 32 random bits: cycles run at one instant (a test's fixed clock, several operators at once) must
            # not collide (16 bits did, in the API's generated-request test: a 500 on reports.id)
            report_id = "rep-" + now.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]
            report = {"id": report_id, "timestamp": isoformat(now), "triggeredBy": actor,
                      "metrics": metrics, "previousMetrics": previous, "readiness": readiness.to_json(),
                      "recommendation": readiness.recommendation, "circuitBreakerEvents": week_events,
                      "validationReversions": reversions, "proposal": proposal, "proposalNote": note}
            markdown = render(report)
            reports_repo.insert(conn, id=report_id, created_at=now, kind="weekly",
                                recommendation=readiness.recommendation, data=report, markdown=markdown)
            readiness_repo.add_assessment(conn, taken_at=now, score=readiness.score, ready=readiness.ready,
                                          technical_score=readiness.category_score("technical"),
                                          process_score=readiness.category_score("process"),
                                          organizational_score=readiness.category_score("organizational"),
                                          data=readiness.to_json())
            audit.append(conn, at=now, actor=actor, action="cycle.run", target=report_id,
                         details={"recommendation": readiness.recommendation, "score": round(readiness.score, 4),
                                  "proposal": proposal["proposalId"] if proposal else None})
            if self.enqueue_alert is not None:
                self.enqueue_alert(conn, report_alert(report_id, markdown, readiness.recommendation, now), False)
        return report


class Reports:
    def __init__(self, store: Store) -> None:
        self.store = store

    def latest(self) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = reports_repo.latest(conn)
        return None if row is None else {**row.data, "markdown": row.markdown}

    def list(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = reports_repo.list_reports(conn, limit)
        return [{"id": r.id, "createdAt": isoformat(r.created_at), "recommendation": r.recommendation,
                 "markdown": r.markdown} for r in rows]
