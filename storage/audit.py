"""The hash-chained audit log: append inside a write transaction, verify from the first entry.

``hash = H(prev_hash || canonical_json(seq, at, actor, action, target, reason, details[, state][, key]))``
where H is HMAC-SHA256 under the store's audit key (``AuditKey``, a file held outside the store: a
database writer without it cannot recompute a keyed chain) or plain sha256 for an unkeyed entry
(``key_id`` ""; every entry before revision 0012). ``seq`` is contiguous from 1, so a removed row shows as
a gap, an edited row as a hash mismatch and a reordered one as a broken link. The first keyed entry after
unkeyed ones is an ``audit.keyed`` entry naming the key; once keyed, an unkeyed entry is a failure.

Each entry also carries ``state``: the governance state after it (phase, whitelist, paused types, kill
switch, breaker mode, mode), read by the same statement that finds the previous entry, so that
``engine/audit_verify.py`` finds a state edited without an entry.

Which key a connection appends with: ``use_key(url, key)`` for the store at that URL (console/config.py
registers the configured key file's key when it builds the facade); no key, an unkeyed entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import audit_log as T
from storage.tables import governance_state as STATE

GENESIS = "0" * 64
KEYED_ACTION = "audit.keyed"
log = logging.getLogger("govcon.audit")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the key ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditKey:
    """An HMAC-SHA256 key; ``id`` (8 hex) is what entries record, never the key."""

    secret: bytes = field(repr=False)
    id: str = ""

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("an audit key must be at least 16 bytes")
        object.__setattr__(self, "id", hashlib.sha256(b"govcon-audit-key:" + self.secret).hexdigest()[:8])


_KEYS: dict[str, AuditKey] = {}
_KEYS_LOCK = threading.Lock()


def _url_key(url: Any) -> str:
    return url.render_as_string(hide_password=False) if hasattr(url, "render_as_string") else str(url)


def use_key(url: Any, key: AuditKey | None) -> None:
    """Append to (and verify) the store at ``url`` with ``key``; None: unkeyed."""
    with _KEYS_LOCK:
        if key is None:
            _KEYS.pop(_url_key(url), None)
        else:
            _KEYS[_url_key(url)] = key


def key_for(conn: Connection) -> AuditKey | None:
    if not _KEYS:
        return None
    return _KEYS.get(_url_key(conn.engine.url))


# --- hashing ------------------------------------------------------------------------------------


def entry_hash(prev_hash: str, seq: int, at: datetime, actor: str, action: str, target: str,
               reason: str, details: dict[str, Any], *, state: dict[str, Any] | None = None,
               key: AuditKey | None = None) -> str:
    doc: dict[str, Any] = {"seq": seq, "at": _iso(at), "actor": actor, "action": action, "target": target,
                           "reason": reason, "details": details}
    if state is not None:
        doc["state"] = state
    if key is not None:
        doc["key"] = key.id
    body = (prev_hash + json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                   default=str)).encode()
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key.secret, body, hashlib.sha256).hexdigest()


#: the governance state an entry records (``state``): column -> the name in the entry
STATE_FIELDS = {"current_phase": "phase", "command_whitelist": "whitelist",
                "paused_command_types": "paused", "kill_switch_engaged": "killSwitch",
                "breaker_mode": "breakerMode", "mode": "mode"}


def state_snapshot(row: Any) -> dict[str, Any]:
    doc = {name: getattr(row, column) for column, name in STATE_FIELDS.items()}
    doc["whitelist"] = list(doc["whitelist"] or [])
    doc["paused"] = list(doc["paused"] or [])
    doc["killSwitch"] = bool(doc["killSwitch"])
    doc["mode"] = doc["mode"] or "normal"
    return doc


_LAST_SEQ = sa.select(sa.func.max(T.c.seq)).scalar_subquery()
#: one statement: the governance state and the newest entry (the state row may not exist yet)
_STATE_AND_LAST = (sa.select(*(STATE.c[c] for c in STATE_FIELDS), T.c.seq, T.c.hash, T.c.key_id)
                   .select_from(STATE.outerjoin(T, T.c.seq == _LAST_SEQ)).where(STATE.c.id == 1))
_LAST = sa.select(T.c.seq, T.c.hash, T.c.key_id).order_by(T.c.seq.desc()).limit(1)


def append(conn: Connection, *, at: datetime, actor: str, action: str, target: str = "",
           reason: str = "", details: dict[str, Any] | None = None, head: Any = None) -> int:
    """Append one entry; the caller holds the store's write lock (see storage.db.write_connection).
    ``head``: a row read earlier in this same transaction, with nothing written to the state or the log
    since, carrying the state's columns and the newest entry as ``a_seq``, ``a_hash``, ``a_key``
    (storage.actions_repo.gate_snapshot with audit_head): the append then reads nothing."""
    entry = next_entry(conn, at=at, actor=actor, action=action, target=target, reason=reason, details=details,
                       head=head)
    # the head is anchored outside the log: truncating the newest entries no longer leaves a valid chain
    write_entry(conn, entry)
    return entry["seq"]


def write_entry(conn: Connection, entry: dict[str, Any]) -> None:
    """Insert an entry made by ``next_entry`` and set the state's head to it."""
    conn.execute(_INSERT_ENTRY, entry)
    conn.execute(_SET_HEAD, {"head_seq": entry["seq"], "head_hash": entry["hash"]})


def next_entry(conn: Connection, *, at: datetime, actor: str, action: str, target: str = "",
               reason: str = "", details: dict[str, Any] | None = None, head: Any = None) -> dict[str, Any]:
    """The next entry's row (the parameters of ``_INSERT_ENTRY``), chained and hashed, not yet inserted: the
    caller inserts it and sets the state's head to its seq and hash in the same transaction, before any
    other append (``append`` does; ``storage.actions_repo.write_grant`` does both in one statement). When
    the chain becomes keyed here, the ``audit.keyed`` entry before it is inserted now. ``head``: as for
    ``append``."""
    details = json.loads(json.dumps(details or {}, default=str))  # what the JSON column gives back
    last: _Last | Row[*tuple[Any, ...]] | None  # the newest entry (seq, hash, key_id), or None
    if head is not None and "a_seq" in head._mapping:
        state = state_snapshot(head)
        last = _Last(head.a_seq, head.a_hash, head.a_key) if head.a_seq is not None else None
    else:
        row = conn.execute(_STATE_AND_LAST).first()
        if row is None:  # no governance state yet
            state, last = None, conn.execute(_LAST).first()
        else:
            state, last = state_snapshot(row), (row if row.seq is not None else None)
    seq, prev, prev_key = (last.seq + 1, last.hash, last.key_id) if last else (1, GENESIS, "")
    at = at.astimezone(UTC)
    key = key_for(conn)
    if key is not None and last is not None and prev_key != key.id:  # the chain becomes keyed (or re-keyed)
        if prev_key:
            log.warning("audit chain keyed with key %s, this process holds key %s (another key file?): entries "
                        "from %d on are keyed with it, and `audit verify` with either key reports the others",
                        prev_key, key.id, seq)
        prev = _insert(conn, seq, at, "govcon", KEYED_ACTION, key.id,
                       "the chain is keyed (HMAC-SHA256) from this entry on",
                       {"keyId": key.id, "previousKeyId": prev_key or None}, prev, state, key)
        seq += 1
    elif key is None and prev_key:
        log.warning("audit entry %d is unkeyed after entries keyed with key %s: this process has no audit key "
                    "(set [audit] key_file or GOVCON_AUDIT_KEY_FILE); `audit verify` will report it", seq, prev_key)
    return _entry_row(seq, at, actor, action, target, reason, details, prev, state, key)


@dataclass(frozen=True)
class _Last:
    seq: int
    hash: str
    key_id: str


def _entry_row(seq: int, at: datetime, actor: str, action: str, target: str, reason: str,
               details: dict[str, Any], prev: str, state: dict[str, Any] | None, key: AuditKey | None
               ) -> dict[str, Any]:
    digest = entry_hash(prev, seq, at, actor, action, target, reason, details, state=state, key=key)
    return {"seq": seq, "at": at, "actor": actor, "action": action, "target": target, "reason": reason,
            "details": details, "prev_hash": prev, "hash": digest, "state": state, "key_id": key.id if key else ""}


def _insert(conn: Connection, seq: int, at: datetime, actor: str, action: str, target: str, reason: str,
            details: dict[str, Any], prev: str, state: dict[str, Any] | None, key: AuditKey | None) -> str:
    row = _entry_row(seq, at, actor, action, target, reason, details, prev, state, key)
    conn.execute(_INSERT_ENTRY, row)
    return row["hash"]


# built once: an append executes them with its values as parameters
ENTRY_COLUMNS = ("seq", "at", "actor", "action", "target", "reason", "details", "prev_hash", "hash", "state",
                 "key_id")
_INSERT_ENTRY = sa.insert(T)
SET_HEAD = _SET_HEAD = (sa.update(STATE).where(STATE.c.id == 1)
             .values(audit_head_seq=sa.bindparam("head_seq"), audit_head_hash=sa.bindparam("head_hash")))


# --- verifying ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditProblem:
    seq: int
    problem: str
    tampered: bool = True  # False: the entry could not be checked (no key here), not proven edited

    def __str__(self) -> str:
        return f"audit entry {self.seq}: {self.problem}"


@dataclass
class ChainReport:
    checked: int = 0
    problem: AuditProblem | None = None
    keyed_from: int | None = None  #: the first keyed entry
    key_id: str | None = None  #: the key the chain is keyed with
    head_seq: int = 0  #: the newest entry checked
    head_hash: str = ""
    #: the key configured here (None: unkeyed verification)
    configured_key_id: str | None = None

    @property
    def keyed(self) -> bool:
        return self.keyed_from is not None


def verify(conn: Connection, batch: int = 5000) -> tuple[int, AuditProblem | None]:
    """Walk the chain; returns (entries checked, the first problem or None)."""
    report = verify_chain(conn, batch=batch)
    return report.checked, report.problem


def verify_chain(conn: Connection, *, batch: int = 5000, key: AuditKey | None | bool = True,
                 visit: Callable[[Any], None] | None = None) -> ChainReport:
    """Walk the chain with ``key`` (True: the key registered for this store), calling ``visit`` with each
    entry that verified; then check the head recorded in the governance state."""
    key = key_for(conn) if key is True else (key or None)
    rep = ChainReport(configured_key_id=key.id if key else None)
    expected_seq, prev = 1, GENESIS
    for row in _rows(conn, batch):
        problem = _check_row(row, expected_seq, prev, key, rep)
        if problem is not None:
            rep.problem = problem
            return rep
        if visit is not None:
            visit(row)
        prev, expected_seq, rep.checked = row.hash, expected_seq + 1, rep.checked + 1
        rep.head_seq, rep.head_hash = row.seq, row.hash
    rep.problem = _check_head(conn, rep, prev, key)
    return rep


def _check_row(row: Any, expected_seq: int, prev: str, key: AuditKey | None, rep: ChainReport) -> AuditProblem | None:
    if row.seq != expected_seq:
        if row.seq > expected_seq:
            missing = (f"entry {expected_seq} is" if row.seq == expected_seq + 1
                       else f"entries {expected_seq}-{row.seq - 1} are")
            return AuditProblem(expected_seq, f"removed ({missing} missing before entry {row.seq})")
        return AuditProblem(row.seq, "out of order")
    if row.prev_hash != prev:
        return AuditProblem(row.seq, "reordered or its predecessor was replaced "
                                     "(link to the previous entry is broken)")
    row_key: AuditKey | None = None
    if row.key_id:
        if rep.keyed_from is None:
            rep.keyed_from, rep.key_id = row.seq, row.key_id
        elif row.key_id != rep.key_id and row.action != KEYED_ACTION:
            return AuditProblem(row.seq, f"keyed with key {row.key_id} inside a chain keyed with {rep.key_id}")
        if row.action == KEYED_ACTION:
            rep.key_id = row.key_id
        if key is None:
            return AuditProblem(row.seq, f"keyed with audit key {row.key_id}, and no audit key is configured here, "
                                         "so this entry and the ones after it cannot be checked (set [audit] "
                                         "key_file or GOVCON_AUDIT_KEY_FILE to the service's key file)",
                                tampered=False)
        if row.key_id != key.id:
            return AuditProblem(row.seq, f"keyed with audit key {row.key_id}, but the configured key is {key.id} "
                                         "(the wrong key file?)", tampered=False)
        row_key = key
    elif rep.keyed_from is not None:
        return AuditProblem(row.seq, f"unkeyed after the chain was keyed at entry {rep.keyed_from}: written "
                                     f"or rewritten without the audit key (action {row.action!r} by {row.actor!r})")
    digest = entry_hash(prev, row.seq, row.at, row.actor, row.action, row.target, row.reason,
                        row.details or {}, state=row.state, key=row_key)
    if digest != row.hash:
        return AuditProblem(row.seq, f"edited (its content no longer matches its hash; "
                                     f"action {row.action!r} by {row.actor!r})")
    return None


def _check_head(conn: Connection, rep: ChainReport, prev: str, key: AuditKey | None) -> AuditProblem | None:
    checked = rep.checked
    head = conn.execute(sa.select(STATE.c.audit_head_seq, STATE.c.audit_head_hash, STATE.c.created_by,
                                  STATE.c.created_at).where(STATE.c.id == 1)).first()
    if head is None:
        return None
    if checked == 0:
        return AuditProblem(1, f"removed (the log is empty, but the store has governance state, created by "
                               f"{head.created_by} at {_iso(head.created_at)}: every entry was deleted)")
    if head.audit_head_seq > checked:
        return AuditProblem(checked + 1, f"removed (the log ends at entry {checked} but its head "
                                         f"was entry {head.audit_head_seq})")
    if head.audit_head_seq < checked:
        return AuditProblem(checked, f"the recorded head is entry {head.audit_head_seq}, shorter than the log "
                                     f"({checked} entries): the head was reset or entries were added behind it")
    if head.audit_head_hash != prev:
        return AuditProblem(checked, "replaced (the newest entry does not match the recorded head)")
    if key is not None and rep.keyed_from is None:
        return AuditProblem(checked, f"the audit key {key.id} is configured but no entry is keyed: the log was "
                                     "rewritten by someone without the key, or the key was never enrolled "
                                     "(`govcon audit key init` enrolls it)")
    return None


def head(conn: Connection) -> tuple[int, str]:
    """The newest entry's (seq, hash) as the log has it; (0, GENESIS) for an empty log."""
    last = conn.execute(_LAST).first()
    return (last.seq, last.hash) if last else (0, GENESIS)


def last_key_id(conn: Connection) -> str:
    """The key id of the newest entry ("" for unkeyed or an empty log)."""
    last = conn.execute(_LAST).first()
    return last.key_id if last else ""


def _rows(conn: Connection, batch: int) -> Iterator[Any]:
    last = 0
    while True:
        rows = conn.execute(sa.select(T).where(T.c.seq > last).order_by(T.c.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
