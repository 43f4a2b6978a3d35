"""The alert outbox as operators see it: what is waiting, what was sent, and what was given up on
(dead-lettered after a 4xx, too many attempts, or a sink no longer configured), and re-queueing the
dead ones once the cause is fixed. Delivery itself is engine/notifier.py."""

from __future__ import annotations

from typing import Any, Iterable

from engine import access
from engine.clock import Clock, isoformat
from engine.errors import InvalidInput, NotFound
from storage import audit, outbox_repo
from storage.store import Store

STATUSES = ("pending", "sent", "dead")


def alert_json(row) -> dict[str, Any]:
    payload = row.payload or {}
    title = payload.get("title") or (payload.get("payload") or {}).get("summary") or payload.get("text")
    return {"id": row.id, "createdAt": isoformat(row.created_at), "sink": row.sink, "severity": row.severity,
            "kind": row.kind, "dedupKey": row.dedup_key, "status": row.status, "attempts": row.attempts,
            "nextAttemptAt": isoformat(row.next_attempt_at) if row.status == "pending" else None,
            "sentAt": isoformat(row.sent_at), "lastError": row.last_error, "title": title}


class OutboxBook:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def list(self, *, statuses: Iterable[str] = ("pending", "dead"), limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        wanted = tuple(statuses)
        unknown = [s for s in wanted if s not in STATUSES]
        if unknown:
            raise InvalidInput(f"unknown alert status {unknown[0]!r}: one of {', '.join(STATUSES)}")
        with self.store.read() as conn:
            rows = outbox_repo.newest(conn, statuses=wanted, limit=limit)
        return [alert_json(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self.store.read() as conn:
            return outbox_repo.counts_by_status(conn)

    def retry(self, actor: str, ids: Iterable[int] = (), *, all_dead: bool = False) -> list[dict[str, Any]]:
        """Put dead-lettered alerts back in the queue, due now; one transaction, one audit entry."""
        ids = sorted(set(ids))
        if not ids and not all_dead:
            raise InvalidInput("name the alerts to retry (ids from `govcon alerts list`) or pass --dead")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "alerts.retry")
            dead = {r.id: r for r in outbox_repo.newest(conn, statuses=("dead",), limit=None)}
            if all_dead:
                ids = sorted(dead)
            for alert_id in ids:
                if alert_id not in dead:
                    known = outbox_repo.get(conn, alert_id)
                    if known is None:
                        raise NotFound(f"no alert {alert_id} in the outbox; see `govcon alerts list --status all`")
                    raise InvalidInput(f"alert {alert_id} is {known.status}, not dead: only dead alerts are retried")
            if not ids:
                return []
            for alert_id in ids:
                outbox_repo.requeue(conn, alert_id, now)
            audit.append(conn, at=now, actor=actor, action="alerts.retry", target="alert_outbox",
                         details={"ids": ids, "sinks": sorted({dead[i].sink for i in ids})})
            return [alert_json(outbox_repo.get(conn, i)) for i in ids]
