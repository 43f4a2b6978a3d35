"""The alert outbox as operators see it: what is waiting, what was sent, what was given up on
(dead-lettered after a 4xx, too many attempts, or a sink no longer configured); and, once the cause is
fixed, sending the dead ones again or dismissing them. Delivery itself is engine/notifier.py.

A dead trigger whose resolve has been sent (or is on its way) since is *superseded*: sending it now
would open an incident that is already over, so it is never retried, only dismissed.

Delivery is at least once (engine/notifier.py): ``idempotencyKey`` is the header every attempt of a row
carries, so an operator can find a row's repeats in a sink's own log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Row

from engine import access
from engine.clock import Clock, isoformat
from engine.errors import InvalidInput, NotFound
from engine.notifier import idempotency_key
from storage import audit, outbox_repo
from storage.store import Store

STATUSES = ("pending", "sent", "dead", "dismissed")
AlertLists = dict[str, list[dict[str, Any]]]  # "changed"/"superseded" -> the alerts as alert_json shows them
MAX_ID = 2**63 - 1  # the id column's range (BIGINT on PostgreSQL, INTEGER on SQLite)


def statuses_for(choice: str | None) -> tuple[str, ...]:
    """What `--status` / `?status=` asks for: by default the alerts that need attention (waiting or
    dead-lettered), ``all``, or one status."""
    return ("pending", "dead") if choice is None else STATUSES if choice == "all" else (choice,)


def alert_json(row: Row, *, superseded: bool = False) -> dict[str, Any]:
    return {"id": row.id, "createdAt": isoformat(row.created_at), "sink": row.sink, "severity": row.severity,
            "kind": row.kind, "title": row.title or None, "dedupKey": row.dedup_key, "status": row.status,
            "attempts": row.attempts,
            "nextAttemptAt": isoformat(row.next_attempt_at) if row.status == "pending" else None,
            "sentAt": isoformat(row.sent_at), "lastError": row.last_error, "superseded": superseded,
            "idempotencyKey": idempotency_key(row.id, row.dedup_key)}


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
        if limit < 1:
            raise InvalidInput(f"--limit must be at least 1, not {limit}")
        with self.store.read() as conn:
            rows = outbox_repo.list_rows(conn, statuses=wanted, limit=limit, newest_first=True)
            return [alert_json(r, superseded=r.status == "dead" and outbox_repo.superseded(conn, r)) for r in rows]

    def counts(self) -> dict[str, int]:
        """Alerts per status, every status named (zero when none)."""
        with self.store.read() as conn:
            counts = outbox_repo.counts_by_status(conn)
        return {status: counts.get(status, 0) for status in STATUSES}

    def retry(self, actor: str, ids: Iterable[int] = (), *, all_dead: bool = False) -> AlertLists:
        """Dead alerts back in the queue, due now (``retried``); with ``all_dead``, superseded triggers are
        left out (``superseded``). One transaction, one audit entry."""
        return self._change(actor, ids, all_dead, action="alerts.retry", reason=None)

    def dismiss(self, actor: str, ids: Iterable[int] = (), *, all_dead: bool = False,
                reason: str) -> AlertLists:
        """Dead alerts given up on for good, with the reason: they leave the header's count."""
        if not reason or not reason.strip():
            raise InvalidInput("dismissing alerts needs --reason: why they will never be sent")
        return self._change(actor, ids, all_dead, action="alerts.dismiss", reason=reason.strip())

    def _change(self, actor: str, ids: Iterable[int], all_dead: bool, *, action: str,
                reason: str | None) -> AlertLists:
        ids = sorted(set(ids))
        out_of_range = [i for i in ids if not 1 <= i <= MAX_ID]
        if out_of_range:
            raise InvalidInput(f"alert id {out_of_range[0]} does not exist (ids run from 1; see `govcon alerts list`)")
        if bool(ids) == all_dead:
            raise InvalidInput("name the alerts (ids from `govcon alerts list`) or pass --dead, not both")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "alerts.manage")
            if all_dead:
                rows = outbox_repo.list_rows(conn, status="dead")
            else:
                rows = outbox_repo.by_ids(conn, ids)
                missing = sorted(set(ids) - {r.id for r in rows})
                if missing:
                    raise NotFound(f"no alert {missing[0]} in the outbox; see `govcon alerts list --status all`")
                for r in rows:
                    if r.status != "dead":
                        raise InvalidInput(f"alert {r.id} is {r.status}, not dead: only dead alerts are retried "
                                           f"or dismissed")
            changed, superseded = [], []
            for r in rows:
                if action == "alerts.retry" and outbox_repo.superseded(conn, r):
                    if not all_dead:
                        raise InvalidInput(f"alert {r.id} is superseded: the resolve for {r.dedup_key!r} was sent "
                                           f"or queued after it, so sending the trigger now would open an incident "
                                           f"that is over; dismiss it (`govcon alerts dismiss {r.id} --reason …`)")
                    superseded.append(r.id)
                    continue
                if action == "alerts.retry":
                    outbox_repo.requeue(conn, r.id, now)
                else:
                    outbox_repo.dismiss(conn, r.id)
                changed.append(r.id)
            if changed:
                details: dict[str, Any] = {"ids": changed, "sinks": sorted({r.sink for r in rows if r.id in changed})}
                if reason is not None:
                    details["reason"] = reason
                audit.append(conn, at=now, actor=actor, action=action, target="alert_outbox", details=details)
            after = {r.id: r for r in outbox_repo.by_ids(conn, changed + superseded)}
            return {"changed": [alert_json(after[i]) for i in changed],
                    "superseded": [alert_json(after[i], superseded=True) for i in superseded]}
