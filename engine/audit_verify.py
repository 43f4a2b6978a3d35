"""`govcon audit verify`: the chain, the head recorded elsewhere, and the state the log accounts for.

Three questions, each answered from the store and what the caller brings:

1. Is the chain intact? (storage/audit.py ``verify_chain``: links, hashes — HMAC under the audit key when
   the chain is keyed —, no gap, the head anchored in the governance state neither 0 nor shorter than
   the log.) An unkeyed chain verifies with a warning: a database writer can rewrite it.
2. Does it still contain the head recorded elsewhere (``--expect-head SEQ:HASH``, from `audit head` or the
   anchor file)? A log shorter than that head, or whose entry SEQ has another hash, was rewritten.
3. Does the state equal what the log says? Every entry since revision 0012 records the governance state
   after it (phase, whitelist, paused types, kill switch, breaker mode, mode): between two entries only the
   fields the later entry's action changes may differ, and the state now must be the newest entry's.
   Roles, API tokens and breaker rules are replayed from the entries' details (store.init, role.grant and
   role.revoke; token.create and token.revoke; rule.add and rule.set) and compared with their tables; a
   row the log does not account for is named. Gate policies and alert sinks too (policy.set and
   policy.delete; sink.set and sink.delete, whose entries record a sink's shown settings and a fingerprint
   of its URL and routing key): a policy or sink added, changed, re-pointed or deleted without an entry is
   named. Entries from before 0012 carry no state: the state is
   checked from the first entry that does; token entries before the fingerprint was recorded are checked
   for existence and operator only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.clock import isoformat
from engine.domain import DEFAULT_RULES
from engine.errors import InvalidInput
from storage import audit, breaker_repo, identity_repo, policies_repo, sinks_repo, state_repo

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from engine.governance import Governance
    from storage.store import Store

UNKEYED_WARNING = "unkeyed: a database writer can rewrite it"

#: which state fields (audit.STATE_FIELDS names) an action may change; any other action changes none
CHANGES: dict[str, frozenset[str]] = {
    "store.init": frozenset(audit.STATE_FIELDS.values()),
    "proposal.apply": frozenset({"phase", "whitelist"}),
    "phase.revert": frozenset({"phase", "whitelist"}),
    "breaker.trip": frozenset({"phase", "whitelist", "paused"}),
    "breaker.resolve": frozenset({"paused"}),
    "breaker.probe": frozenset({"paused"}),
    "breaker.close": frozenset({"paused"}),
    "kill_switch.engage": frozenset({"killSwitch"}),
    "kill_switch.release": frozenset({"killSwitch"}),
    "kill_switch.drill": frozenset({"killSwitch"}),
    "breaker.mode": frozenset({"breakerMode"}),
    "mode.set": frozenset({"mode"}),
}
#: the rule fields DEFAULT_RULES gives at store.init (the others take the table's defaults)
_INIT_RULE_DEFAULTS = {"shadow": False, "recovery": "half_open", "cooldown": None, "probes": 3}
_HEAD = re.compile(r"^\s*(\d+)[:\s]\s*([0-9a-f]{64})\s*$")


def format_head(seq: int, digest: str) -> str:
    return f"{seq}:{digest}"


def parse_head(text: str) -> tuple[int, str]:
    m = _HEAD.match(text or "")
    if m is None:
        raise InvalidInput(f"--expect-head {text!r}: expected SEQ:HASH as `govcon audit head` prints it "
                           "(e.g. 42:3f9a…, 64 hex digits)")
    return int(m.group(1)), m.group(2)


def token_fingerprint(token_hash: str) -> str:
    """What a token.create entry records of the stored secret hash (never the secret)."""
    return hashlib.sha256(("govcon-token:" + token_hash).encode()).hexdigest()[:16]


@dataclass
class VerifyReport:
    checked: int = 0
    head: tuple[int, str] = (0, audit.GENESIS)
    keyed_from: int | None = None
    key_id: str | None = None
    problems: list[str] = field(default_factory=list)  #: tampering, or entries that could not be checked
    warnings: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  #: what older entries do not let us check
    chain_problem: audit.AuditProblem | None = None  #: the first broken entry, when the chain is broken

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "head": format_head(*self.head),
                "keyed": self.keyed_from is not None, "keyedFrom": self.keyed_from, "keyId": self.key_id,
                "problems": self.problems, "warnings": self.warnings, "unchecked": self.unchecked,
                "problem": None if self.chain_problem is None else {"seq": self.chain_problem.seq,
                                                                    "message": str(self.chain_problem),
                                                                    "tampered": self.chain_problem.tampered}}


class _Replay:
    """Walks verified entries: state transitions, and what roles, tokens and rules should be."""

    def __init__(self, expect_seq: int | None) -> None:
        self.expect_seq = expect_seq
        self.expected_hash: str | None = None
        self.problems: list[str] = []
        self.first_state: int | None = None
        self.last_state: dict[str, Any] | None = None
        self.last_state_seq = 0
        self.roles: dict[tuple[str, str], int] = {}  # (operator, role) -> the seq that granted it
        self.tokens: dict[str, dict[str, Any]] = {}  # id -> {operator, fingerprint, seq, revoked}
        self.rules: dict[str, tuple[int, dict[str, Any]]] = {}  # name -> (seq, fields the log gives)
        self.proposals: dict[str, dict[str, Any]] = {}  # id -> proposal.create's details
        self.policies: dict[str, tuple[int, dict[str, Any]]] = {}  # name -> (seq, spec the log gives)
        self.sinks: dict[str, tuple[int, dict[str, Any]]] = {}  # name -> (seq, shown settings + fingerprint)
        self.deleted_policies: dict[str, int] = {}
        self.deleted_sinks: dict[str, int] = {}

    def visit(self, row: Any) -> None:
        if row.seq == self.expect_seq:
            self.expected_hash = row.hash
        if row.state is not None:
            self._transition(row)
        handler = getattr(self, "_" + row.action.replace(".", "_"), None)
        if handler is not None:
            handler(row, row.details or {})

    def _transition(self, row: Any) -> None:
        if self.last_state is None:
            self.first_state = row.seq
        else:
            allowed = CHANGES.get(row.action, frozenset())
            for name, value in row.state.items():
                before = self.last_state.get(name)
                if value != before and name not in allowed:
                    self.problems.append(
                        f"state: {name} changed from {before!r} to {value!r} between audit entries "
                        f"{self.last_state_seq} and {row.seq}, and {row.action!r} does not change it: edited "
                        "without an audit entry")
            for name, expected in _meant(row, self.last_state, self.proposals).items():
                if row.state.get(name) != expected:
                    self.problems.append(
                        f"state: audit entry {row.seq} ({row.action!r} by {row.actor!r}) left {name} at "
                        f"{row.state.get(name)!r}, but that action makes it {expected!r}: the state was edited "
                        "without an audit entry before it")
            if row.action in _FLIPS and self.last_state.get("killSwitch") == row.state.get("killSwitch"):
                self.problems.append(
                    f"state: audit entry {row.seq} ({row.action!r} by {row.actor!r}) found the kill switch "
                    f"{'engaged' if row.state.get('killSwitch') else 'released'} already, as the log had left it "
                    "at entry {0}: it was flipped without an audit entry in between".format(self.last_state_seq))
        self.last_state, self.last_state_seq = row.state, row.seq

    # --- what each audited action says ------------------------------------------------------------

    def _store_init(self, row: Any, d: dict[str, Any]) -> None:
        for role in d.get("roles") or ["admin"]:
            self.roles[(row.actor, role)] = row.seq
        defaults = {r["name"]: r for r in DEFAULT_RULES}
        for name in d.get("rules") or []:
            fields = {k: v for k, v in defaults.get(name, {}).items() if k != "name"}
            self.rules[name] = (row.seq, {**_INIT_RULE_DEFAULTS, **fields} if name in defaults else {})
        for name, spec in (d.get("policies") or {}).items():  # seeded from the config file
            self.policies[name] = (row.seq, dict(spec))
        for name, view in (d.get("sinks") or {}).items():
            self.sinks[name] = (row.seq, dict(view))

    def _proposal_create(self, row: Any, d: dict[str, Any]) -> None:
        self.proposals[row.target] = d

    def _role_grant(self, row: Any, d: dict[str, Any]) -> None:
        self.roles[(row.target, str(d.get("role", "")))] = row.seq

    def _role_revoke(self, row: Any, d: dict[str, Any]) -> None:
        self.roles.pop((row.target, str(d.get("role", ""))), None)

    def _token_create(self, row: Any, d: dict[str, Any]) -> None:
        self.tokens[row.target] = {"operator": d.get("operator"), "fingerprint": d.get("fingerprint"),
                                   "seq": row.seq, "revoked": False,
                                   **({"expiresAt": d["expiresAt"]} if "expiresAt" in d else {})}

    def _token_revoke(self, row: Any, d: dict[str, Any]) -> None:
        if row.target in self.tokens:
            self.tokens[row.target]["revoked"] = True

    def _rule_add(self, row: Any, d: dict[str, Any]) -> None:
        self.rules[row.target] = (row.seq, dict(d.get("after") or {}))

    def _rule_set(self, row: Any, d: dict[str, Any]) -> None:
        seq, fields = self.rules.get(row.target, (row.seq, {}))
        self.rules[row.target] = (row.seq, {**fields, **(d.get("after") or {})})

    def _policy_set(self, row: Any, d: dict[str, Any]) -> None:
        self.policies[row.target] = (row.seq, dict(d.get("after") or {}))
        self.deleted_policies.pop(row.target, None)

    def _policy_delete(self, row: Any, d: dict[str, Any]) -> None:
        self.policies.pop(row.target, None)
        self.deleted_policies[row.target] = row.seq

    def _sink_set(self, row: Any, d: dict[str, Any]) -> None:
        self.sinks[row.target] = (row.seq, dict(d.get("after") or {}))
        self.deleted_sinks.pop(row.target, None)

    def _sink_delete(self, row: Any, d: dict[str, Any]) -> None:
        self.sinks.pop(row.target, None)
        self.deleted_sinks[row.target] = row.seq


#: actions govcon writes only when they flip the kill switch (an engaged switch is not engaged again)
_FLIPS = frozenset({"kill_switch.engage", "kill_switch.release"})


def _meant(row: Any, before: dict[str, Any], proposals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The state fields an entry's action sets to a value its details (or its meaning) give: a change of
    another field hidden behind an action allowed to change it still shows."""
    d = row.details or {}
    if row.action == "proposal.apply":
        commands = (proposals.get(row.target) or {}).get("commands")
        meant: dict[str, Any] = {"phase": d.get("to")}
        if commands is not None:  # the apply adds the proposal's types to the whitelist it found
            meant["whitelist"] = list(dict.fromkeys([*(before.get("whitelist") or []), *commands]))
        return meant
    if row.action == "phase.revert":
        return {"phase": "L3", "whitelist": []}
    if row.action == "kill_switch.engage":
        return {"killSwitch": True}
    if row.action == "kill_switch.release":
        return {"killSwitch": False}
    if row.action in ("breaker.mode", "mode.set") and "after" in d:
        return {"breakerMode" if row.action == "breaker.mode" else "mode": d["after"]}
    return {}


def verify(store: Store, *, expect_head: str | None = None, key: Any = True) -> VerifyReport:
    """The whole check (see the module's docstring); ``key``: True for the key registered for the store."""
    expected = parse_head(expect_head) if expect_head is not None else None
    replay = _Replay(expected[0] if expected else None)
    report = VerifyReport()
    with store.read() as conn:
        chain = audit.verify_chain(conn, key=key, visit=replay.visit)
        report.checked, report.keyed_from, report.key_id = chain.checked, chain.keyed_from, chain.key_id
        report.head = audit.head(conn)
        if chain.problem is not None:
            report.chain_problem = chain.problem
            report.problems.append(str(chain.problem))
        elif not chain.keyed:
            report.warnings.append(UNKEYED_WARNING)
        if expected is not None:
            _check_expected_head(report, replay, *expected)
        if chain.problem is not None:
            report.unchecked.append("the state: the chain is broken, so the log cannot say what it should be")
            return report
        report.problems.extend(replay.problems)
        _check_state(conn, report, replay)
        _check_roles(conn, report, replay)
        _check_tokens(conn, report, replay)
        _check_rules(conn, report, replay)
        _check_policies(conn, report, replay)
        _check_sinks(conn, report, replay)
    return report


def _check_expected_head(report: VerifyReport, replay: _Replay, seq: int, digest: str) -> None:
    last = report.head[0]
    if seq > last:
        report.problems.append(
            f"expected head {seq}: the log ends at entry {last}" + (" (it is empty)" if last == 0 else "")
            + f", shorter than the head recorded earlier: entries {last + 1}-{seq} were deleted")
    elif seq == 0:
        return
    elif replay.expected_hash is None:
        report.problems.append(f"expected head {seq}: the chain breaks before entry {seq}, so it cannot be checked")
    elif replay.expected_hash != digest:
        report.problems.append(f"expected head {seq}:{digest[:12]}…, but entry {seq} has hash "
                               f"{replay.expected_hash[:12]}…: the log was rewritten")


def _check_state(conn: Connection, report: VerifyReport, replay: _Replay) -> None:
    state = state_repo.get_state(conn)
    if state is None:
        return
    if replay.last_state is None:
        report.unchecked.append("phase, whitelist, paused types, kill switch and modes: no entry records the "
                                "state yet (entries before revision 0012 do not)")
        return
    if replay.first_state and replay.first_state > 1:
        report.unchecked.append(f"state transitions before entry {replay.first_state} (entries before revision "
                                "0012 record no state)")
    now = audit.state_snapshot(state)
    for name, value in now.items():
        recorded = replay.last_state.get(name)
        if value != recorded:
            report.problems.append(f"state: {name} is {value!r} in the store, but the newest audit entry "
                                   f"({replay.last_state_seq}) recorded {recorded!r}: changed without an audit entry")


def _check_roles(conn: Connection, report: VerifyReport, replay: _Replay) -> None:
    held = {(g.operator, g.role): g for g in identity_repo.all_grants(conn)}
    for (operator, role), g in sorted(held.items()):
        if (operator, role) not in replay.roles:
            report.problems.append(f"roles: {operator} holds {role} (granted by {g.granted_by!r} as the row says), "
                                   "but no audit entry grants it: granted without an audit entry")
    for (operator, role), seq in sorted(replay.roles.items()):
        if (operator, role) not in held:
            report.problems.append(f"roles: audit entry {seq} granted {role} to {operator} and none revoked it, "
                                   "but the store has no such grant: revoked without an audit entry")


def _check_tokens(conn: Connection, report: VerifyReport, replay: _Replay) -> None:
    old = 0
    for row in identity_repo.list_tokens(conn):
        logged = replay.tokens.get(row.id)
        if logged is None:
            report.problems.append(f"tokens: token {row.id} for {row.operator} is in the store, but no audit "
                                   "entry created it: added without an audit entry")
            continue
        if logged["operator"] != row.operator:
            report.problems.append(f"tokens: token {row.id} acts as {row.operator}, but audit entry {logged['seq']} "
                                   f"created it for {logged['operator']}: changed without an audit entry")
        if logged["fingerprint"] is None:
            old += 1
        elif logged["fingerprint"] != token_fingerprint(row.token_hash):
            report.problems.append(f"tokens: token {row.id}'s secret is not the one audit entry {logged['seq']} "
                                   "created: replaced without an audit entry")
        if logged["revoked"] and row.revoked_at is None:
            report.problems.append(f"tokens: token {row.id} was revoked (audited) but is active again in the store")
        elif row.revoked_at is not None and not logged["revoked"]:
            report.problems.append(f"tokens: token {row.id} is revoked in the store, but no audit entry revokes it")
        if "expiresAt" in logged and logged["expiresAt"] != isoformat(getattr(row, "expires_at", None)):
            report.problems.append(f"tokens: token {row.id} expires at {isoformat(getattr(row, 'expires_at', None))}, "
                                   f"but audit entry {logged['seq']} created it to expire at {logged['expiresAt']}: "
                                   "changed without an audit entry")
    if old:
        report.unchecked.append(f"the secrets of {old} API token(s) created before their fingerprint was audited")


def _check_rules(conn: Connection, report: VerifyReport, replay: _Replay) -> None:
    rows = {r.name: r for r in breaker_repo.list_rules(conn)}
    for name, row in sorted(rows.items()):
        if name not in replay.rules:
            report.problems.append(f"rules: rule {name!r} is in the store, but no audit entry adds it: added "
                                   "without an audit entry")
            continue
        seq, fields = replay.rules[name]
        for k, v in sorted(fields.items()):
            if getattr(row, k, v) != v:
                report.problems.append(f"rules: rule {name!r} has {k} = {getattr(row, k)!r}, but audit entry {seq} "
                                       f"left it at {v!r}: changed without an audit entry")
    for name, (seq, _fields) in sorted(replay.rules.items()):
        if name not in rows:
            report.problems.append(f"rules: audit entry {seq} added rule {name!r}, but the store has no such rule: "
                                   "deleted without an audit entry")


def _check_policies(conn: Connection, report: VerifyReport, replay: _Replay) -> None:
    rows = {r.name: r for r in policies_repo.all_policies(conn)}
    for name, row in sorted(rows.items()):
        logged = replay.policies.get(name)
        if logged is None:
            gone = replay.deleted_policies.get(name)
            report.problems.append(f"policies: policy {name!r} is in the store, but no audit entry sets it"
                                   + (f" (entry {gone} deleted it)" if gone else "")
                                   + ": added without an audit entry")
            continue
        seq, spec = logged
        stored = dict(row.spec or {})
        if stored != spec:
            changed = sorted(k for k in set(stored) | set(spec) if stored.get(k) != spec.get(k))
            report.problems.append(
                f"policies: policy {name!r} has " + ", ".join(f"{k} = {stored.get(k)!r}" for k in changed)
                + f", but audit entry {seq} left it at " + ", ".join(f"{k} = {spec.get(k)!r}" for k in changed)
                + ": changed without an audit entry")
    for name, (seq, _spec) in sorted(replay.policies.items()):
        if name not in rows:
            report.problems.append(f"policies: audit entry {seq} set policy {name!r}, but the store has no such "
                                   "policy: deleted without an audit entry")


def _check_sinks(conn: Connection, report: VerifyReport, replay: _Replay) -> None:
    from engine.store_config import sink_json
    rows = {r.name: r for r in sinks_repo.all_sinks(conn)}
    for name, row in sorted(rows.items()):
        logged = replay.sinks.get(name)
        if logged is None:
            gone = replay.deleted_sinks.get(name)
            report.problems.append(f"alert sinks: sink {name!r} is in the store, but no audit entry sets it"
                                   + (f" (entry {gone} deleted it)" if gone else "")
                                   + ": added without an audit entry")
            continue
        seq, view = logged
        now = {k: v for k, v in sink_json(row).items() if k not in ("createdAt", "createdBy", "updatedAt",
                                                                    "updatedBy")}
        changed = sorted(k for k in set(now) | set(view) if now.get(k) != view.get(k))
        if changed:
            what = ["its URL or routing key (the secret's fingerprint differs)" if k == "secretFingerprint"
                    else f"{k} = {now.get(k)!r} (audited {view.get(k)!r})" for k in changed]
            report.problems.append(f"alert sinks: sink {name!r} has {', '.join(what)} against audit entry {seq}: "
                                   "changed without an audit entry")
    for name, (seq, _view) in sorted(replay.sinks.items()):
        if name not in rows:
            report.problems.append(f"alert sinks: audit entry {seq} set sink {name!r}, but the store has no such "
                                   "sink: deleted without an audit entry")


def enroll_key(gov: Governance, actor: str, key: audit.AuditKey) -> int | None:
    """Key the chain from now on (`govcon audit key init`, admin): the first keyed entry of an existing
    store is an ``audit.keyed`` entry naming the key. Returns its seq; None if the chain is keyed with it."""
    from engine import access
    audit.use_key(gov.store.engine.url, key)
    with gov.store.write() as conn:
        access.require_role(conn, actor, "roles.manage")
        last_seq, _ = audit.head(conn)
        last_key = audit.last_key_id(conn)
        if last_seq and last_key == key.id:
            return None
        seq = audit.append(conn, at=gov.clock.now(), actor=actor, action="audit.key.enroll", target=key.id,
                           reason="the chain is keyed from here on", details={"keyId": key.id})
        return seq - 1 if last_seq else seq
