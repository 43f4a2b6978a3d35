"""The hash-chained audit log: append inside a write transaction, verify from the first entry.

``hash = sha256(prev_hash || canonical_json(seq, at, actor, action, target, reason, details))``;
``seq`` is contiguous from 1, so a removed row shows as a gap, an edited row as a hash mismatch and a
reordered one as a broken link.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage.tables import audit_log as T
from storage.tables import governance_state as STATE

GENESIS = "0" * 64


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(prev_hash: str, seq: int, at: datetime, actor: str, action: str, target: str,
               reason: str, details: dict[str, Any]) -> str:
    body = json.dumps(
        {"seq": seq, "at": _iso(at), "actor": actor, "action": action, "target": target,
         "reason": reason, "details": details},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str,
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def append(conn: Connection, *, at: datetime, actor: str, action: str, target: str = "",
           reason: str = "", details: dict[str, Any] | None = None) -> int:
    """Append one entry; the caller holds the store's write lock (see storage.db.write_connection)."""
    details = json.loads(json.dumps(details or {}, default=str))  # what the JSON column gives back
    last = conn.execute(sa.select(T.c.seq, T.c.hash).order_by(T.c.seq.desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    at = at.astimezone(UTC)
    digest = entry_hash(prev, seq, at, actor, action, target, reason, details)
    conn.execute(sa.insert(T).values(seq=seq, at=at, actor=actor, action=action, target=target,
                                     reason=reason, details=details, prev_hash=prev, hash=digest))
    # the head is anchored outside the log: truncating the newest entries no longer leaves a valid chain
    conn.execute(sa.update(STATE).where(STATE.c.id == 1).values(audit_head_seq=seq, audit_head_hash=digest))
    return seq


@dataclass(frozen=True)
class AuditProblem:
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"audit entry {self.seq}: {self.problem}"


def verify(conn: Connection, batch: int = 5000) -> tuple[int, AuditProblem | None]:
    """Walk the chain; returns (entries checked, the first problem or None)."""
    expected_seq, prev, checked = 1, GENESIS, 0
    for row in _rows(conn, batch):
        if row.seq != expected_seq:
            if row.seq > expected_seq:
                missing = (f"entry {expected_seq} is" if row.seq == expected_seq + 1
                           else f"entries {expected_seq}-{row.seq - 1} are")
                return checked, AuditProblem(expected_seq, f"removed ({missing} missing before entry {row.seq})")
            return checked, AuditProblem(row.seq, "out of order")
        if row.prev_hash != prev:
            return checked, AuditProblem(row.seq, "reordered or its predecessor was replaced "
                                                  "(link to the previous entry is broken)")
        digest = entry_hash(prev, row.seq, row.at, row.actor, row.action, row.target, row.reason,
                            row.details or {})
        if digest != row.hash:
            return checked, AuditProblem(row.seq, f"edited (its content no longer matches its hash; "
                                                  f"action {row.action!r} by {row.actor!r})")
        prev, expected_seq, checked = row.hash, expected_seq + 1, checked + 1
    head = conn.execute(sa.select(STATE.c.audit_head_seq, STATE.c.audit_head_hash).where(STATE.c.id == 1)).first()
    if head is not None and head.audit_head_seq:
        if head.audit_head_seq > checked:
            return checked, AuditProblem(checked + 1, f"removed (the log ends at entry {checked} but its head "
                                                      f"was entry {head.audit_head_seq})")
        if head.audit_head_seq == checked and head.audit_head_hash != prev:
            return checked, AuditProblem(checked, "replaced (the newest entry does not match the recorded head)")
    return checked, None


def _rows(conn: Connection, batch: int) -> Iterator[Any]:
    last = 0
    while True:
        rows = conn.execute(sa.select(T).where(T.c.seq > last).order_by(T.c.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
