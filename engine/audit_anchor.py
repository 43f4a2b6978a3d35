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
from engine.audit_verify import format_head, parse_head
from engine.clock import isoformat
from engine.errors import InvalidInput
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


def last_anchored_head(path: Path) -> tuple[str, str]:
    """(``SEQ:HASH``, when it was anchored) from the newest line of an anchor file the job wrote, for
    `govcon audit verify --anchor-file PATH`. A missing or empty file, or a line that is not ``<at> SEQ:HASH
    <store>``, is refused naming the file and the line: a check against nothing must not pass."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"--anchor-file {path}: no such file (the audit-anchor job writes it: [audit] "
                           "anchor_file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--anchor-file {path}: cannot be read ({exc})") from None
    newest: tuple[str, str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) < 2:
                raise InvalidInput("too few fields")
            seq, digest = parse_head(parts[1])
        except InvalidInput:
            raise InvalidInput(f"--anchor-file {path}, line {number}: not an anchor line (`<at> SEQ:HASH <store>` "
                               "as the audit-anchor job writes them)") from None
        newest = (format_head(seq, digest), parts[0])
    if newest is None:
        raise InvalidInput(f"--anchor-file {path}: holds no anchored head yet")
    return newest
