"""Gate policies (seed 002's PolicyEngine), per command type, from the config file:

    [policies.service_restart]
    command_types = ["restart_service"]     # default: the policy's own name
    enabled = true
    max_per_day = 2                          # grants (and unasked autonomous runs) in the last 24 hours
    max_per_week = 7                         # ... in the last 7 days
    min_interval = "5m"                      # at least this long between two grants
    max_concurrent = 1                       # grants in flight at once
    per_service = false                      # true: the limits count per service (an ask must name one)
    confidence_threshold = 0.90
    maintenance_window_required = true
    maintenance_window = "02:00-05:00"       # UTC; may wrap midnight
    notification_level = "alert"             # info | alert | approval_required (action requests)
    requires_approval = false                # true: never autonomous, every action is approved by a human
    rollback_mandatory = false               # true: `govcon run` refuses to run without --rollback
    approver_roles = ["on-call"]             # who may approve its action requests (default: on-call,
                                             # incident-commander, ops-lead)
    grant_ttl = "15m"                        # a grant without an outcome by then expires
    request_ttl = "30m"                      # an action request undecided by then expires
    stable_for = "30m"                       # an incident on the ask's service this recently -> needs_approval

The policies live in the store (table ``gate_policies``, edited with `govcon policies set|delete`, audited),
so that every process on a store answers the same: the config file's ``[policies]`` only seeds them at
`govcon db init` (with no ``[policies]`` table at all, seed 002's policies, ``DEFAULT_POLICIES``; an empty
table means none) and `govcon db import-config`. The table above is the spelling a stored policy's ``spec``
keeps. A ``PolicyEngine`` over a store caches the policies and reloads them when the governance state's
``policies_version`` moves: the gate reads that row anyway, so a decision pays one integer comparison.

A policy applies because it covers the command type. An ask's ``actionClass`` naming another policy adds
that policy's limits; it never replaces the covering ones (it can narrow, never loosen).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any

from engine.calibration import calibrated_in
from engine.domain import GOVERNANCE_ROLES as ROLES  # an agent never approves an action
from engine.errors import InvalidInput
from engine.gate import NEEDS_APPROVAL, Ask, GateDecision
from engine.rule_language import RuleError, parse_window
from storage import actions_repo, events_repo, policies_repo

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.engine import Connection, Row

NOTIFICATION_LEVELS = ("info", "alert", "approval_required")
DEFAULT_GRANT_TTL = timedelta(minutes=15)
DEFAULT_REQUEST_TTL = timedelta(minutes=30)
DEFAULT_APPROVER_ROLES: tuple[str, ...] = ("on-call", "incident-commander", "ops-lead")
#: agents' clocks drift: reported runs stamped a little ahead still count as in the window
CLOCK_SKEW = timedelta(seconds=5)
_KEYS = {"command_types", "enabled", "max_per_day", "max_per_week", "min_interval", "max_concurrent",
         "per_service", "confidence_threshold", "maintenance_window_required", "maintenance_window",
         "notification_level", "requires_approval", "rollback_mandatory", "approver_roles", "grant_ttl",
         "request_ttl", "stable_for", "calibrated"}

#: seed 002's PolicyEngine, shipped: the policies when the config file has no [policies] table. Its
#: maintenance windows are left out (the seed names none; a required window without one is refused).
DEFAULT_POLICIES: dict[str, dict[str, Any]] = {
    "pool_tuning": {"max_per_day": 5, "max_per_week": 20, "confidence_threshold": 0.85,
                    "rollback_mandatory": True, "notification_level": "info"},
    "service_restart": {"max_per_day": 2, "max_per_week": 7, "confidence_threshold": 0.90,
                        "notification_level": "alert"},
    "code_deployment": {"enabled": False, "requires_approval": True, "notification_level": "approval_required"},
}


@dataclass(frozen=True)
class Policy:
    name: str
    command_types: tuple[str, ...]
    enabled: bool = True
    max_per_day: int | None = None
    max_per_week: int | None = None
    confidence_threshold: float | None = None
    maintenance_window_required: bool = False
    maintenance_window: tuple[time, time] | None = None
    notification_level: str = "info"
    min_interval: timedelta | None = None
    max_concurrent: int | None = None
    per_service: bool = False
    requires_approval: bool = False
    rollback_mandatory: bool = False
    approver_roles: tuple[str, ...] = DEFAULT_APPROVER_ROLES
    grant_ttl: timedelta = DEFAULT_GRANT_TTL
    request_ttl: timedelta = DEFAULT_REQUEST_TTL
    stable_for: timedelta | None = None  # no incident on the ask's service for this long before an allow
    calibrated: bool = False  # judge the agent's observed success at its stated confidence (engine/calibration.py)

    def in_window(self, now: datetime) -> bool:
        if self.maintenance_window is None:
            return False
        start, end = self.maintenance_window
        t = now.timetz().replace(tzinfo=None)
        return start <= t < end if start <= end else (t >= start or t < end)

    @property
    def rate_limited(self) -> bool:
        return (self.max_per_day, self.max_per_week, self.min_interval, self.max_concurrent) != (None,) * 4

    def to_json(self) -> dict[str, Any]:
        mw = self.maintenance_window
        return {"name": self.name, "commandTypes": list(self.command_types), "enabled": self.enabled,
                "maxPerDay": self.max_per_day, "maxPerWeek": self.max_per_week,
                "minInterval": _duration_text(self.min_interval), "maxConcurrent": self.max_concurrent,
                "perService": self.per_service, "confidenceThreshold": self.confidence_threshold,
                "maintenanceWindowRequired": self.maintenance_window_required,
                "maintenanceWindow": f"{mw[0]:%H:%M}-{mw[1]:%H:%M} UTC" if mw else None,
                "notificationLevel": self.notification_level, "requiresApproval": self.requires_approval,
                "rollbackMandatory": self.rollback_mandatory, "approverRoles": list(self.approver_roles),
                "grantTtl": _duration_text(self.grant_ttl), "requestTtl": _duration_text(self.request_ttl),
                "stableFor": _duration_text(self.stable_for), "calibrated": self.calibrated}


def _duration_text(d: timedelta | None) -> str | None:
    if d is None:
        return None
    seconds = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _window(text: Any, where: str) -> tuple[time, time]:
    try:
        a, b = str(text).split("-")
        return time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
    except ValueError:
        raise InvalidInput(f"{where}.maintenance_window: {text!r} is not HH:MM-HH:MM (UTC)") from None


def _duration(raw: dict[str, Any], key: str, where: str) -> timedelta | None:
    if key not in raw:
        return None
    try:
        return parse_window(raw[key])
    except RuleError as exc:
        raise InvalidInput(f"{where}.{key}: {exc}") from None


def _whole(raw: dict[str, Any], key: str, where: str, *, minimum: int) -> int | None:
    v = raw.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < minimum):
        raise InvalidInput(f"{where}.{key}: must be a whole number >= {minimum}")
    return v


def _flag(raw: dict[str, Any], key: str, where: str) -> bool:
    v = raw.get(key, False)
    if not isinstance(v, bool):
        raise InvalidInput(f"{where}.{key}: must be true or false")
    return v


def load_policies(section: dict[str, Any] | None) -> list[Policy]:
    out = []
    for name, raw in (section or {}).items():
        where = f"[policies.{name}]"
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where} must be a table")
        unknown = set(raw) - _KEYS
        if unknown:
            hints = [f"{k} (did you mean {m[0]}?)" if (m := get_close_matches(k, _KEYS, n=1)) else k
                     for k in sorted(unknown)]
            raise InvalidInput(f"{where}: unknown keys {', '.join(hints)}")
        max_day = _whole(raw, "max_per_day", where, minimum=0)
        max_week = _whole(raw, "max_per_week", where, minimum=0)
        max_concurrent = _whole(raw, "max_concurrent", where, minimum=1)
        ct = raw.get("confidence_threshold")
        if ct is not None and (isinstance(ct, bool) or not isinstance(ct, (int, float)) or not 0 <= ct <= 1):
            raise InvalidInput(f"{where}.confidence_threshold: must be a number from 0 to 1")
        level = raw.get("notification_level", "info")
        if level not in NOTIFICATION_LEVELS:
            raise InvalidInput(f"{where}.notification_level: {level!r} is not one of {', '.join(NOTIFICATION_LEVELS)}")
        types = raw.get("command_types", [name])
        if not isinstance(types, list) or not types or not all(isinstance(t, str) and t for t in types):
            raise InvalidInput(f"{where}.command_types: must be a list of command type names")
        roles = raw.get("approver_roles", list(DEFAULT_APPROVER_ROLES))
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise InvalidInput(f"{where}.approver_roles: must be a list of roles ({', '.join(ROLES)})")
        mw = _window(raw["maintenance_window"], where) if "maintenance_window" in raw else None
        required = _flag(raw, "maintenance_window_required", where)
        if required and mw is None:
            raise InvalidInput(f"{where}: maintenance_window_required needs maintenance_window = \"HH:MM-HH:MM\"")
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidInput(f"{where}.enabled: must be true or false")
        out.append(Policy(
            name, tuple(types), enabled, max_day, max_week, float(ct) if ct is not None else None, required, mw,
            level, min_interval=_duration(raw, "min_interval", where), max_concurrent=max_concurrent,
            per_service=_flag(raw, "per_service", where), requires_approval=_flag(raw, "requires_approval", where),
            rollback_mandatory=_flag(raw, "rollback_mandatory", where), approver_roles=tuple(roles),
            grant_ttl=_duration(raw, "grant_ttl", where) or DEFAULT_GRANT_TTL,
            request_ttl=_duration(raw, "request_ttl", where) or DEFAULT_REQUEST_TTL,
            stable_for=_duration(raw, "stable_for", where), calibrated=_flag(raw, "calibrated", where)))
    return out


def policy_spec(policy: Policy) -> dict[str, Any]:
    """The policy as the config file spells it (``[policies.NAME]``'s keys), defaults left out but
    ``command_types``: what the store keeps, what `policies show` prints and what the audit records."""
    d: dict[str, Any] = {"command_types": list(policy.command_types)}
    if not policy.enabled:
        d["enabled"] = False
    for key in ("max_per_day", "max_per_week", "max_concurrent", "confidence_threshold"):
        if getattr(policy, key) is not None:
            d[key] = getattr(policy, key)
    for key in ("min_interval", "stable_for"):
        if getattr(policy, key) is not None:
            d[key] = _duration_text(getattr(policy, key))
    for key in ("per_service", "requires_approval", "rollback_mandatory", "calibrated",
                "maintenance_window_required"):
        if getattr(policy, key):
            d[key] = True
    if policy.maintenance_window is not None:
        d["maintenance_window"] = "-".join(_clock_text(t) for t in policy.maintenance_window)
    if policy.notification_level != "info":
        d["notification_level"] = policy.notification_level
    if policy.approver_roles != DEFAULT_APPROVER_ROLES:
        d["approver_roles"] = list(policy.approver_roles)
    if policy.grant_ttl != DEFAULT_GRANT_TTL:
        d["grant_ttl"] = _duration_text(policy.grant_ttl)
    if policy.request_ttl != DEFAULT_REQUEST_TTL:
        d["request_ttl"] = _duration_text(policy.request_ttl)
    return d


def _clock_text(t: time) -> str:
    return t.isoformat(timespec="minutes" if not t.second and not t.microsecond else "seconds")


def load_stored(rows: Iterable[Row[Any]]) -> list[Policy]:
    """The policies of the store's rows (name, spec), validated as the config file's are: a row that does
    not validate (edited behind govcon's back) raises InvalidInput, and the gate then fails closed."""
    return load_policies({row.name: dict(row.spec or {}) for row in rows})


def configured_policies(raw_config: dict[str, Any]) -> list[Policy]:
    """The policies of a parsed config file: its [policies] table, or seed 002's defaults without one."""
    if "policies" not in raw_config:
        return load_policies(DEFAULT_POLICIES)
    return load_policies(raw_config["policies"])


def calibrated_confidence(conn: Connection, ask: Ask, stated: float, now: datetime) -> tuple[float, str]:
    """The confidence a ``calibrated`` policy judges for the ask's ``stated`` one (its ``confidence``, checked
    present by the caller), and the sentence that says which it is."""
    if ask.agent is None:
        return stated, "no agent named: the stated confidence is used"
    return calibrated_in(conn, ask.agent, ask.command_type, stated, now)


class _SnapCounts:
    """A policy's counts from the gate's snapshot row (``actions_repo.gate_snapshot``), by name."""

    __slots__ = ("snap", "prefix", "index", "entries")

    def __init__(self, snap: Any, index: int, entries: dict[Any, Any] | None = None) -> None:
        self.snap, self.prefix, self.index, self.entries = snap, f"p{index}_", index, entries or {}

    def unasked(self, window: str) -> tuple[tuple, int | None] | None:
        """(the reused entry, what its count missed since; None: too many arrived) for a window the snapshot
        brought up to date, else None (not read, or a run without a grant arrived)."""
        if self.snap is None:
            return None
        mapping = self.snap._mapping
        key = f"{self.prefix}{window}_more"
        if key not in mapping:
            return None
        entry = self.entries.get((self.index, window))
        if entry is None:
            return None
        if mapping[f"{self.prefix}{window}_arrived"] > actions_repo.ARRIVALS_READ:
            return entry, None  # too many arrived: count the window again
        if mapping[key] is None:  # a run without a grant arrived: _unasked_runs counts the update itself
            return None
        return entry, mapping[key]

    def kept_grants(self, window: str, span: timedelta, now: datetime, cap: int) -> int | None:
        """The grants of a window counted from the engine's kept grant times (``_GrantTimes``), when the
        snapshot's audit head is the one they were kept at (the snapshot then did not count them); else None."""
        entry = self.entries.get(("grants", self.index))
        if entry is None or self.snap is None or self.snap._mapping.get("audit_head_hash") != entry.hash:
            return None
        return entry.count(now - span, cap)

    def get(self, name: str, *, missing: Any = None) -> Any:
        if self.snap is None:
            return missing
        mapping = self.snap._mapping
        key = self.prefix + name
        return mapping[key] if key in mapping else missing


#: a policy whose day or week cap is higher than this has its grants counted in the store on every ask (the kept
#: times would be up to the cap's number of datetimes, and their first read as long as the count)
KEPT_GRANTS_MAX = 50_000


#: at most this many policy scopes (types, service) keep grant times; the others (past it) are counted in the store
KEPT_SCOPES_MAX = 1000


class _GrantTimes:
    """The times of the newest grants of one policy's scope (types, service), kept in memory so that an ask does
    not count the day's and the week's grants again (issue 12 "Speed"), and the audit head (``audit_head_hash``
    of the governance state) they are exact at. Every grant is written with its audit entry in the same
    transaction, which moves that head (``actions_repo.write_grant``: the only writer of grants besides
    ``insert_grant``, which drops these in its process), whichever process writes it; so while the head a
    snapshot reads is this one, no grant was written since. The gate's snapshot reads the head in the same
    statement as its other counts and counts the grants itself when the head differs (a CASE in
    ``actions_repo._snapshot_stmt``). The head is a hash of the whole chain: a rolled-back or restored store
    never shows a kept head again with other grants behind it.

    ``times``: oldest first, the newest ``n`` (the policy's larger cap) of those granted since ``since`` (the
    load's ``now`` less the longest window): a count from any later start, up to a cap <= n, is exact."""

    __slots__ = ("hash", "times", "n", "loaded_at", "span", "generation")

    def __init__(self, hash_: str, times: list[datetime], n: int, loaded_at: datetime, span: timedelta,
                 generation: int) -> None:
        self.hash, self.times, self.n, self.loaded_at, self.span = hash_, times, n, loaded_at, span
        self.generation = generation

    def usable(self, now: datetime) -> bool:
        # a window starting before the load's would miss grants it did not read (a clock set back)
        return self.loaded_at <= now and self.generation == actions_repo.RAW_GRANT_WRITES

    def count(self, since: datetime, cap: int) -> int:
        return min(len(self.times) - bisect.bisect_left(self.times, since), cap)

    def plus(self, hash_: str, at: datetime | None, now: datetime) -> _GrantTimes:
        """These times at the next audit head, with one more grant at ``at`` (None: the grant was not of this
        scope); the times before the longest window of ``now`` are let go, and these times then serve asks
        at ``now`` or later only (an ask at an earlier instant counts in the store)."""
        start = max(self.loaded_at, now)
        times = self.times[bisect.bisect_left(self.times, start - self.span):]
        if at is not None:
            bisect.insort(times, at)
            if len(times) > self.n:
                times = times[-self.n:]
        return _GrantTimes(hash_, times, self.n, start, self.span, self.generation)


#: a count of runs reported without a grant is reused while no command event has arrived since, for at most
#: this long: such runs only age out of the window meanwhile, so a reused count can only be too high (safe)
COUNT_REUSE = timedelta(seconds=30)


#: a reused count older than this is counted again in the background (``refresh_stale``), so that asks seldom
#: pay a window's full count themselves
COUNT_REFRESH = COUNT_REUSE / 2


_NO_VERSION = object()


@dataclass
class PolicyEngine:
    """The gate's policies. Over a ``store`` (every facade built for a store, `govcon serve` included) they are
    the store's, cached and reloaded when ``policies_version`` moves; without one, the fixed ``policies``
    list (tests, backtests)."""

    policies: list[Policy] = field(default_factory=list)
    store: Any = None
    #: while the store has no policies of its own (policies_version 0: a store from before revision 0019 that
    #: has not run `govcon db import-config`), the config file's, as before
    fallback: list[Policy] = field(default_factory=list)
    _unasked: dict[tuple, tuple[int, datetime, int, int, datetime]] = field(default_factory=dict, repr=False)
    _stale: dict[tuple, int] = field(default_factory=dict, repr=False)  # window key -> cap, to count again
    #: (types, service, max_per_day, max_per_week) -> the grant times kept at an audit head (``_GrantTimes``)
    _grant_times: dict[tuple, _GrantTimes] = field(default_factory=dict, repr=False)

    def grant_written(self, conn: Connection, ask: Ask, now: datetime, before: Any, after: Any,
                      entries: dict[Any, Any]) -> None:
        """After the gate wrote a grant at ``now`` in ``conn``'s transaction, moving the audit head from
        ``before`` to ``after``: the kept grant times exact at ``before`` are moved to ``after`` (with this grant
        where it is of their scope); those of the ask's scopes kept at another head (or never) are read again,
        in this transaction (so with this grant). Others are let go. Called under the gate's write lock; the
        gate forgets them all if the transaction then fails (``forget_grant_times``)."""
        generation = actions_repo.RAW_GRANT_WRITES
        kept: dict[tuple, _GrantTimes] = {}
        for key, times in self._grant_times.items():
            if times.hash == before and times.generation == generation and len(kept) < KEPT_SCOPES_MAX:
                types, service = key[0], key[1]
                mine = ask.command_type in types and (service is None or service == ask.service)
                kept[key] = times.plus(after, now if mine else None, now)
        for key in entries.get("grant_keys", ()):
            if key not in kept:
                types, service, day, week = key
                span = timedelta(days=7) if week is not None else timedelta(days=1)
                n = max(day or 0, week or 0)
                at = actions_repo.grant_times(conn, types, now - span, n, service=service)
                kept[key] = _GrantTimes(after, at, n, now, span, generation)
        self._grant_times = kept

    def forget_grant_times(self) -> None:
        self._grant_times = {}

    def stale_counts(self) -> bool:
        """Whether a reused count is due to be counted again (``refresh_stale``)."""
        return bool(self._stale)

    def refresh_stale(self, conn: Connection, now: datetime) -> int:
        """Count again, on a read of their own (a background thread of the gate, off the asks' path), the
        windows whose reused count is older than COUNT_REFRESH. Each new count is an entry like the one an
        ask would have taken itself: the newest command event id read first, then the window counted (an
        event stored between the two is counted again later: too high, the safe side); it replaces the
        entry only if the entry was counted earlier. Returns how many were counted."""
        stale, self._stale = self._stale, {}
        done = 0
        newest = actions_repo.newest_command_event_id(conn) if stale else 0
        for key, cap in stale.items():
            types, service, span = key
            until = now + CLOCK_SKEW
            used = actions_repo.executions_without_grant(conn, types, now - span, until, service=service, cap=cap)
            current = self._unasked.get(key)
            if current is None or current[1] < now:
                self._unasked[key] = (newest, now, used, cap, until)
            done += 1
        return done


    _loaded: tuple[Any, list[Policy]] | None = field(default=None, repr=False)  # (version, policies)
    _synced_conn: Any = field(default=None, repr=False)  # the connection the last sync read its version in

    # --- where the policies come from -----------------------------------------------------------

    def sync(self, conn: Connection, state: Any = None) -> list[Policy]:
        """The policies as of ``conn``'s snapshot. ``state`` (the governance state row the caller has read
        already) carries ``policies_version``: then a decision costs one comparison, and a reload happens only
        after a change. Without it the version is read (one primary-key select)."""
        if self.store is None:
            return self.policies
        version = getattr(state, "policies_version", _NO_VERSION) if state is not None else _NO_VERSION
        if version is _NO_VERSION:
            version = policies_repo.version(conn)
        loaded = self._loaded
        if loaded is None or loaded[0] != version:
            loaded = (version, load_stored(policies_repo.all_policies(conn)) if version else list(self.fallback))
            self._loaded = loaded
            self.policies = loaded[1]
        self._synced_conn = conn  # a Connection is one transaction of store.read()/write(): see _in
        return loaded[1]

    def _in(self, conn: Connection | None) -> list[Policy]:
        """The policies for a caller inside a transaction: as the check earlier in the same transaction
        synced them, else synced here."""
        if self.store is None:
            return self.policies
        if conn is None:
            return self.current()
        if conn is self._synced_conn and self._loaded is not None:
            return self._loaded[1]
        return self.sync(conn)

    def _cached(self) -> list[Policy]:
        """The policies as last synced, without a read (the store's read once when never synced): what
        ``count_specs`` plans the gate's snapshot with, before the snapshot's state row says the version."""
        if self.store is None:
            return self.policies
        loaded = self._loaded
        return loaded[1] if loaded is not None else self.current()

    def current(self) -> list[Policy]:
        """The policies now (a read of the store when they come from one): for callers outside the gate."""
        if self.store is None:
            return self.policies
        with self.store.read() as conn:
            return self.sync(conn)

    def _unasked_runs(self, conn: Connection, types: tuple[str, ...], service: str | None, span: timedelta,
                      now: datetime, cap: int, memo: dict[Any, Any]) -> int:
        """Autonomous runs reported without a grant in the window, read at most ``cap`` of them. The window's
        scan is shared by the asks of COUNT_REUSE: until then a count is reused while no command event has
        arrived, and brought up to date by a seek over the events stored since (by primary key) otherwise —
        grants' outcomes, the usual arrivals, name their grant and add nothing. ``memo`` is shared by the
        windows of one judgement (the newest id and the arrivals are read once)."""
        if "newest" not in memo:
            memo["newest"] = actions_repo.newest_command_event_id(conn)
        newest = memo["newest"]
        key = (types, service, span)
        until = now + CLOCK_SKEW
        pre = memo.get(("pre", *key))  # (the entry the gate's snapshot brought up to date, what it missed)
        cached = pre[0] if pre is not None else self._unasked.get(key)
        if cached is not None and timedelta(0) <= now - cached[1] < COUNT_REUSE:
            seen, counted_at, value, read_cap, counted_until = cached
            if now - counted_at >= COUNT_REFRESH:  # the gate counts it again in the background
                self._stale[key] = max(read_cap, self._stale.get(key, 0))
            if value >= read_cap and cap <= read_cap:  # saturated at a cap at least as high: stays spent
                return cap
            if value < read_cap and newest >= seen:  # exact then: add what arrived since
                more: int | None = 0
                if pre is not None:
                    more = pre[1]  # None: too many arrived, count the window again
                elif newest != seen or until > counted_until:
                    more = actions_repo.executions_without_grant_since_count(
                        conn, types, now - span, until, after_id=seen, upto_id=newest,
                        counted_until=counted_until, service=service, memo=memo)
                if more is not None:  # None: too many arrived, count the window again
                    value += more
                    if not memo.get("frozen"):  # a snapshot reused at a later instant brings nothing up to date
                        self._unasked[key] = (newest, counted_at, value, read_cap, max(until, counted_until))
                    if value < read_cap or cap <= read_cap:
                        return min(value, cap)
        used = actions_repo.executions_without_grant(conn, types, now - span, until, service=service, cap=cap)
        if len(self._unasked) > 10_000:
            self._unasked.clear()
        self._unasked[key] = (newest, now, used, cap, until)
        return used

    def find(self, command_type: str, action_class: str | None = None) -> Policy | None:
        """The policy an ask answers to first (the one covering its type); see ``applicable``."""
        found = self.applicable(command_type, action_class)
        return found[0] if found else None

    def applicable(self, command_type: str, action_class: str | None = None, *,
                   conn: Connection | None = None) -> list[Policy]:
        """Every policy covering the command type, plus the one the action class names: all of them
        must agree before an allow, so naming a class can only add limits. (The store's policies now, or
        as of ``conn``.)"""
        return _applicable(self._in(conn), command_type, action_class)

    def count_specs(self, ask: Ask, now: datetime) -> tuple[tuple[actions_repo.CountSpec | None, ...],
                                                            dict[str, Any], dict[tuple, tuple]]:
        """What the gate's one-statement snapshot (``actions_repo.gate_snapshot``) reads for the policies:
        per applicable policy (in ``applicable`` order) the grant counts its limits need (None for a policy
        that refuses before counting or has no limits), and for each window whose count of runs without a
        grant is reused (``_unasked_runs``) its update since; the parameters of those updates; and the
        reused entries they start from, by (policy index, window) (``check`` passes them on)."""
        out: list[actions_repo.CountSpec | None] = []
        params: dict[str, Any] = {"until": now + CLOCK_SKEW}
        entries: dict[Any, Any] = {}
        policies = self._cached()
        entries["policies"] = policies  # check() counts afresh if the snapshot's policies_version moved since
        for i, p in enumerate(_applicable(policies, ask.command_type, ask.action_class)):
            if (not p.enabled or p.requires_approval or (p.per_service and ask.service is None)
                    or not p.rate_limited):
                out.append(None)
                continue
            service = ask.service if p.per_service else None
            more = []
            for window, limit, span in (("day", p.max_per_day, timedelta(days=1)),
                                        ("week", p.max_per_week, timedelta(days=7))):
                cached = self._unasked.get((p.command_types, service, span)) if limit is not None else None
                if cached is None or not timedelta(0) <= now - cached[1] < COUNT_REUSE or cached[2] >= cached[3]:
                    continue  # no reusable, unsaturated count: _unasked_runs reads what it needs itself
                more.append(window)
                params[f"p{i}_{window}_seen"], params[f"p{i}_{window}_lo"] = cached[0], max(cached[4], now - span)
                entries[(i, window)] = cached
            caps = [c for c in (p.max_per_day, p.max_per_week) if c is not None]
            if caps and max(caps) <= KEPT_GRANTS_MAX:  # the day's and week's grants: kept in memory?
                key = (p.command_types, service, p.max_per_day, p.max_per_week)
                kept = self._grant_times.get(key)
                if kept is not None and kept.usable(now):
                    params[f"p{i}_known"] = kept.hash
                    entries[("grants", i)] = kept
                entries.setdefault("grant_keys", []).append(key)
            out.append(actions_repo.CountSpec(p.command_types, p.per_service, p.max_per_day, p.max_per_week,
                                              p.max_concurrent, p.min_interval is not None, tuple(more)))
        return tuple(out), params, entries

    def check(self, conn: Connection, state: Any, ask: Ask, now: datetime, snap: Any = None,
              entries: dict[Any, Any] | None = None, *, frozen: bool = False
              ) -> tuple[GateDecision | None, dict[str, Any]]:
        """(a refusal or None, extra fields for the decision: the policy and its remaining budget).
        Budgets count grants issued (in flight and finished, expired included) plus autonomous runs
        reported without a grant; so N simultaneous asks against k left get k allows when this runs
        inside the gate's write transaction. ``snap``: the gate's snapshot row, read with
        ``count_specs`` (its counts are used instead of reading them again; ``entries``: count_specs' third).
        ``frozen``: the snapshot is one read earlier and reused (engine/gate.py, a decision that takes no grant):
        the reused counts it brought up to date are not stored back (they were brought up to the instant it was
        read, not to ``now``)."""
        extra: dict[str, Any] = {}
        memo: dict[Any, Any] = {"frozen": True} if frozen else {}
        policies = self.sync(conn, state)
        if entries is not None and entries.get("policies", policies) is not policies:
            snap, entries = None, None  # counted for other policies (they changed since): count again here
        if snap is not None and "g_newest" in snap._mapping:
            memo["newest"] = snap.g_newest or 0
        for i, policy in enumerate(_applicable(policies, ask.command_type, ask.action_class)):
            refused, extra_p = self._check_one(conn, state, policy, ask, now, snap=snap, index=i, memo=memo,
                                               entries=entries)
            if not extra:
                extra = extra_p
            if refused is not None:
                return refused, extra_p
        return None, extra

    def _check_one(self, conn: Connection, state: Any, policy: Policy, ask: Ask, now: datetime, *, snap: Any = None,
                   index: int = 0, memo: dict[Any, Any] | None = None, entries: dict[Any, Any] | None = None
                   ) -> tuple[GateDecision | None, dict[str, Any]]:
        phase = state.current_phase
        extra: dict[str, Any] = {"policy": policy.name, "notificationLevel": policy.notification_level,
                                 "approverRoles": list(policy.approver_roles)}
        if policy.rollback_mandatory:
            extra["rollbackMandatory"] = True

        def refuse(reason: str) -> tuple[GateDecision, dict[str, Any]]:
            decision = GateDecision(NEEDS_APPROVAL, f"policy {policy.name}: {reason}", ask.command_type, phase, extra)
            return decision, extra

        if not policy.enabled:
            return refuse("disabled, so every action needs approval")
        if policy.requires_approval:
            return refuse("requires human approval for every action")
        if policy.per_service and ask.service is None:
            return refuse("counts its limits per service: name the service")
        service = ask.service if policy.per_service else None
        scope = f" for {service}" if service else ""
        budget: dict[str, Any] = {}
        memo = {} if memo is None else memo
        read = _SnapCounts(snap, index, entries)  # the counts the gate's snapshot read already (else: read here)
        for key, limit, span in (("day", policy.max_per_day, timedelta(days=1)),
                                 ("week", policy.max_per_week, timedelta(days=7))):
            if limit is None:
                continue
            used = read.get(key)
            if used is None:  # the snapshot did not count them: kept at its audit head, or not read at all
                used = read.kept_grants(key, span, now, limit)
            if used is None:
                used = actions_repo.grants_since(conn, policy.command_types, now - span, service=service, cap=limit)
            if used < limit:  # runs reported without asking count too
                pre = read.unasked(key)
                if pre is not None:
                    memo[("pre", policy.command_types, service, span)] = pre
                used += self._unasked_runs(conn, policy.command_types, service, span, now, limit - used, memo)
            budget[key] = {"used": used, "limit": limit, "remaining": max(limit - used, 0)}
        if policy.max_concurrent is not None:
            flying = read.get("flying")
            if flying is None:
                flying = actions_repo.in_flight(conn, policy.command_types, now, service=service,
                                                cap=policy.max_concurrent)
            budget["concurrent"] = {"used": flying, "limit": policy.max_concurrent,
                                    "remaining": max(policy.max_concurrent - flying, 0)}
        extra["budget"] = budget
        for key, word in (("day", "daily"), ("week", "weekly")):
            if key in budget and budget[key]["remaining"] == 0:
                return refuse(f"{word} limit reached{scope} ({budget[key]['used']}/{budget[key]['limit']})")
        if "concurrent" in budget and budget["concurrent"]["remaining"] == 0:
            return refuse(f"{budget['concurrent']['used']} action(s) in flight{scope} "
                          f"(at most {policy.max_concurrent} at once)")
        if policy.min_interval is not None:
            last = read.get("last", missing=True)
            if last is True:
                last = actions_repo.newest_grant_at(conn, policy.command_types, service=service)
            if last is not None and now - last < policy.min_interval:
                wait = policy.min_interval - (now - last)
                return refuse(f"the last grant{scope} was {int((now - last).total_seconds())}s ago; at least "
                              f"{_duration_text(policy.min_interval)} between actions "
                              f"(next in {int(wait.total_seconds()) + 1}s)")
        if policy.stable_for is not None:
            if ask.service is None:
                return refuse(f"checks the service's stability (stable_for {_duration_text(policy.stable_for)}): "
                              "name the service")
            inc = events_repo.newest_incident_on(conn, ask.service, now - policy.stable_for, now + CLOCK_SKEW)
            if inc is not None:
                return refuse(f"{ask.service} is not stable: incident {inc.incident_id} ({inc.severity}) at "
                              f"{inc.at:%Y-%m-%d %H:%M:%S}Z, within stable_for {_duration_text(policy.stable_for)}")
        if policy.confidence_threshold is not None:
            if ask.confidence is None:
                return refuse(f"confidence required (threshold {policy.confidence_threshold:.0%})")
            confidence, word = ask.confidence, "confidence"
            if policy.calibrated:
                confidence, extra["calibration"] = calibrated_confidence(conn, ask, ask.confidence, now)
                word = "calibrated confidence" if confidence != ask.confidence else "confidence"
            if confidence < policy.confidence_threshold:
                why = f"{word} {confidence:.0%} below threshold {policy.confidence_threshold:.0%}"
                return refuse(why + (f" ({extra['calibration']})" if policy.calibrated else ""))
        if policy.maintenance_window_required and not policy.in_window(now):
            return refuse(f"outside the maintenance window {policy.to_json()['maintenanceWindow']}")
        return None, extra

    def grant_ttl(self, ask: Ask, conn: Connection | None = None) -> timedelta:
        """The shortest grant_ttl of the policies the ask answers to (as of ``conn``'s transaction)."""
        return min((p.grant_ttl for p in self.applicable(ask.command_type, ask.action_class, conn=conn)),
                   default=DEFAULT_GRANT_TTL)

    def request_terms(self, ask: Ask, conn: Connection | None = None) -> tuple[timedelta, str, tuple[str, ...]]:
        """(request ttl, notification level, approver roles) for an action request: the loudest level and
        the shortest ttl of the policies that apply; approver roles of the covering policy."""
        found = self.applicable(ask.command_type, ask.action_class, conn=conn)
        if not found:
            return DEFAULT_REQUEST_TTL, "info", DEFAULT_APPROVER_ROLES
        level = max((p.notification_level for p in found), key=NOTIFICATION_LEVELS.index)
        return min(p.request_ttl for p in found), level, found[0].approver_roles

    def explain(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self.current()]


def _applicable(policies: list[Policy], command_type: str, action_class: str | None) -> list[Policy]:
    found = [p for p in policies if command_type in p.command_types]
    if action_class:
        named = next((p for p in policies if p.name == action_class), None)
        if named is not None and named not in found:
            found.append(named)
    return found


def limits_text(doc: dict[str, Any]) -> str:
    """A policy's limits in one line (from ``Policy.to_json()``): for `policies list` and the rules screen."""
    if doc.get("invalid"):
        return f"INVALID, the gate fails closed: {doc['invalid']}"
    parts = []
    if not doc.get("enabled", True):
        parts.append("DISABLED")
    if doc.get("requiresApproval"):
        parts.append("approval always")
    for key, unit in (("maxPerDay", "/day"), ("maxPerWeek", "/week")):
        if doc.get(key) is not None:
            parts.append(f"{doc[key]}{unit}")
    if doc.get("minInterval"):
        parts.append(f"≥{doc['minInterval']} apart")
    if doc.get("maxConcurrent") is not None:
        parts.append(f"≤{doc['maxConcurrent']} at once")
    if doc.get("perService"):
        parts.append("per service")
    if doc.get("confidenceThreshold") is not None:
        parts.append(f"conf≥{doc['confidenceThreshold']:.0%}" + (" calibrated" if doc.get("calibrated") else ""))
    if doc.get("maintenanceWindow"):
        parts.append(("in " if doc.get("maintenanceWindowRequired") else "window ") + doc["maintenanceWindow"])
    if doc.get("stableFor"):
        parts.append(f"stable {doc['stableFor']}")
    if doc.get("rollbackMandatory"):
        parts.append("rollback required")
    return ", ".join(parts) or "no limits"
