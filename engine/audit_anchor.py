"""Anchoring the audit head outside the store: the scheduler's ``audit-anchor`` job.

Each run reads the head (seq and hash of the newest entry) and appends it to a file (``[audit]
anchor_file``: one line ``<at> <seq>:<hash> <store>``, mode 0600 when created) and/or sends it as a low
``info`` alert (``anchor_alert = true``) through the alert sinks. Any recorded line later serves as
`govcon audit verify --expect-head SEQ:HASH`: a store whose log is shorter, or whose entry SEQ has
another hash, was rewritten after the anchor. The job writes no audit entry (the head would move with
every anchor).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.alerts import Alert
from engine.audit_verify import format_head
from engine.clock import isoformat
from storage import audit

if TYPE_CHECKING:
    from engine.governance import Governance

JOB_ID = "audit-anchor"
DEFAULT_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True)
class AnchorSettings:
    file: Path | None = None
    alert: bool = False
    interval: timedelta = DEFAULT_INTERVAL

    @property
    def enabled(self) -> bool:
        return self.file is not None or self.alert


def anchor(gov: Governance, settings: AnchorSettings) -> dict[str, Any]:
    """Record the head once; returns what was recorded."""
    now = gov.clock.now()
    with gov.store.read() as conn:
        seq, digest = audit.head(conn)
    head = format_head(seq, digest)
    doc = {"at": isoformat(now), "head": head, "seq": seq, "hash": digest, "store": gov.store.display_url}
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(settings.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{doc['at']} {head} {doc['store']}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    if settings.alert:
        with gov.store.write(serialise=False) as conn:
            gov.notifier.enqueue(conn, Alert(
                kind="info", severity="low", title=f"Audit head {seq}:{digest[:12]}",
                body=f"govcon's audit head at {doc['at']}: {head}. Keep it: `govcon audit verify --expect-head "
                     f"{head}` finds a log rewritten after it.",
                dedup_key=f"govcon-audit-head-{seq}-{digest[:12]}", at=now, details=doc))
    return doc
