"""Agents and their leases (DESIGN.md "Agents and leases"): a dead-man's switch.

An agent renews its lease with a heartbeat (default TTL 60 s); the reply tells it whether it may act
autonomously (``autonomy`` granted or suspended, with the kill switch and the mode), so agents learn of a
stop at their next beat. Leases are judged by the store's clock (the injected Clock) only: nothing an
agent says about time is read.

When a lease is in force: an agent that has ever beaten must hold a live lease for its asks to be
allowed; with ``[agents] require_lease = true`` every ask naming an agent needs one, so an agent that has
never beaten gets ``needs_approval`` too. Asks naming no agent are not affected.

A beat is written only when it must be: when it registers the agent or brings it back after a lapse,
changes its TTL, finds at most RENEW_FRACTION of the stored lease left, or is the agent's first beat since
the kill switch was engaged (the drain's acknowledgement). Other beats are answered from one read, with
the stored expiry (what the gate judges) as ``leaseExpiresAt``; their last beat and count are
group-committed once a second. So the stored lease is never later than the agent asked for — an agent
that stops beating loses it between half a TTL and a TTL after its last beat — and at 100 beats a
second most beats take no write lock at all.

Beats answered from memory (``beat_from_memory``, the HTTP fast path of console/api_agents.py): after a
beat went through ``beat``, this process remembers the agent's stored lease and the state it read (kill
switch, mode). A later beat that would not be written anyway is answered from that memory on the event
loop, with no store read and no thread: the lease it reports is the stored one (only beats move it, and
this memory is refreshed by every beat that writes), and the state is at most STATE_SECONDS old (and
forgotten at once when a change goes through this server: ``forget_state``). A beat answered so is
recorded as of the instant its state was read, not of its arrival, so a beat told "granted" from a state
read before a kill switch was engaged never counts as the drain's acknowledgement. Anything else — no
memory of the agent, a stale state, a role check older than MEMORY_SECONDS, a beat that must be written —
goes through ``beat``.

What is audited: an agent's first beat (``agent.register``), its return after a lapse (``agent.return``)
and a lapse with grants in flight (``agent.lapse``, with one high alert per lapse). A renewal of a live
lease is liveness bookkeeping on the agent's own row (last beat, beat count, token), like a token's
last use: not a governance change, so not audited — at 100 beats a second it would swamp the audit log.
A renewal takes no store-wide write order (``serialise=False``): one single-row UPDATE.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.engine import Connection

from engine.alerts import Alert
from engine.clock import Clock, isoformat
from engine.domain import ACTION_ROLES
from engine.errors import InvalidInput, NotFound, NotInitialised, PermissionDenied
from engine.gate import NEEDS_APPROVAL, Ask, GateDecision, invalid_name
from engine.overrides import kill_switch_json
from storage import agents_repo, audit, identity_repo, state_repo
from storage.store import Store

if TYPE_CHECKING:
    from sqlalchemy.engine import Row

    from engine.kill_marker import KillMarker

DEFAULT_TTL = 60  # seconds
MIN_TTL = 5
MAX_TTL = 3600
GRANTED, SUSPENDED = "granted", "suspended"
#: how long a passed role check for heartbeats is trusted in this process (as the ingest route does)
ROLE_CHECK_SECONDS = 5.0
#: how long a passed role check lets beats be answered from memory (the token cache for heartbeats keeps
#: tokens as long: console/api_auth.py BEAT_CACHE_SECONDS); a revoked role can keep its lease alive that
#: much longer, and never grants anything (the gate judges every ask)
MEMORY_SECONDS = 30.0
#: how often the flusher re-checks, in one read, the role of the operators whose beats are answered from memory
ROLE_REFRESH_SECONDS = 10.0
#: how old the state (kill switch, mode) behind a beat answered from memory may be
STATE_SECONDS = 0.5
#: a beat writes the lease when at most this fraction of its TTL is left (60 s: every beat from 30 s left)
RENEW_FRACTION = 0.5
#: after this many failed group commits in a row the waiting beats are dropped (said once in the log): a
#: renewal dropped so leaves its lease to lapse, which fails safe
GIVE_UP_FLUSHES = 30
#: a renewal answered from memory joins the next group commit only while the stored lease has more than this
#: many seconds left (else it is written at once)
DEFER_MIN_SECONDS = 5.0
#: how often the beats that did not move a lease have their last beat and count recorded (one transaction)
FLUSH_SECONDS = 1.0
#: the group commit's thread ends after this long without a beat waiting
IDLE_SECONDS = 30.0

log = logging.getLogger("govcon.agents")


def check_ttl(ttl: Any) -> int:
    if ttl is None:
        return DEFAULT_TTL
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl != ttl:
        raise InvalidInput(f"ttl {ttl!r} is not a number of seconds")
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidInput(f"ttl {ttl} is outside {MIN_TTL}..{MAX_TTL} seconds")
    return int(ttl)


def agent_json(row: Row, now: datetime, in_flight: int = 0) -> dict[str, Any]:
    live = row.lease_expires_at > now
    return {"name": row.name, "live": live, "leaseExpiresAt": isoformat(row.lease_expires_at),
            "lapsedAt": None if live else isoformat(row.lease_expires_at),
            "lastBeatAt": isoformat(row.last_beat_at), "firstSeenAt": isoformat(row.first_seen_at),
            "ttl": row.ttl_seconds, "beats": row.beats, "lastOperator": row.last_operator,
            "lastTokenId": row.last_token_id, "inFlight": in_flight}


@dataclass(slots=True)
class _Lease:
    """An agent's stored lease as this process last read or wrote it (``AgentBook.beat_from_memory``)."""
    lease_expires_at: datetime
    ttl_seconds: int
    last_beat_at: datetime
    beats: int


class AgentBook:
    def __init__(self, store: Store, clock: Clock, *, require_lease: bool = False, default_ttl: int = DEFAULT_TTL,
                 enqueue_alert: Callable[..., None] | None = None,
                 kill_marker: KillMarker | None = None) -> None:
        self.store = store
        self.clock = clock
        self.require_lease = require_lease
        self.default_ttl = check_ttl(default_ttl)
        self.enqueue_alert = enqueue_alert
        self.kill_marker = kill_marker
        self._may_beat: dict[str, float] = {}  # operator -> monotonic time of its last passed role check
        self._leases: dict[str, _Lease] = {}  # agent -> its stored lease as this process last read or wrote it
        self._state: tuple[float, datetime, Row] | None = None  # (monotonic read, clock read, state row)
        self._pending: dict[str, tuple[datetime, int]] = {}  # agent -> (last beat, beats) not yet recorded
        # agent -> (beat at, new expiry, ttl, operator, token id): renewals answered from memory, not yet stored
        self._renewals: dict[str, tuple[datetime, datetime, int, str, str | None]] = {}
        self._flusher: threading.Thread | None = None
        self.idle_seconds = IDLE_SECONDS  # the group commit's thread ends after this long with nothing to do
        self._lock = threading.Lock()

    # --- heartbeats ---------------------------------------------------------------------------

    def beat(self, operator: str, name: str, *, ttl: Any = None, bound_agent: str | None = None,
             token_id: str | None = None) -> dict[str, Any]:
        """Renew ``name``'s lease for ``ttl`` seconds from the store's now, for the token of ``operator``
        (bound to ``bound_agent``; a token bound to no agent beats for the agent named as its operator).
        An unknown agent's first beat registers it. Returns the heartbeat reply, whose ``leaseExpiresAt``
        is the stored expiry: what the gate judges."""
        why = invalid_name(name, "agent")
        if why is not None:
            raise InvalidInput(why)
        ttl_seconds = self.default_ttl if ttl is None else check_ttl(ttl)
        bound = bound_agent or operator
        if name != bound:
            raise PermissionDenied(f"the token of {operator} is bound to agent {bound}; it cannot send heartbeats "
                                   f"for agent {name} (create a token with `govcon tokens create USER --agent {name}`)")
        now = self.clock.now()
        read_at = time.monotonic()
        with self.store.read() as conn:  # the common case: a live lease far from its end, no write at all
            self._require_role(conn, operator)
            row = agents_repo.get(conn, name)
            state = state_repo.get_state(conn)
        if state is None:
            raise NotInitialised()
        self._state = (read_at, now, state)
        kill = kill_switch_json(state, self.kill_marker.engaged() if self.kill_marker is not None else None)
        if row is not None and not self._must_write(row, now, ttl_seconds, state, kill):
            pending = self._note_beat(name, now)
            self._remember(name, row.lease_expires_at, row.ttl_seconds, max(row.last_beat_at, now),
                           row.beats + pending)
            return self._reply(state, kill, name, now, row.lease_expires_at, row.ttl_seconds, row.beats + pending,
                               registered=False)
        expires = now + timedelta(seconds=ttl_seconds)
        if row is not None and row.lease_expires_at > now:
            with self.store.write(serialise=False) as conn:  # a live lease renewed: one single-row UPDATE
                if agents_repo.renew(conn, name, at=now, expires_at=expires, ttl_seconds=ttl_seconds,
                                     operator=operator, token_id=token_id):
                    beats = row.beats + 1 + self._waiting(name)
                    self._remember(name, expires, ttl_seconds, now, beats)
                    return self._reply(state, kill, name, now, expires, ttl_seconds, beats, registered=False)
        with self.store.write() as conn:  # registering or returning after a lapse: audited, in the chain's order
            row = agents_repo.get(conn, name)
            if row is None:
                agents_repo.insert(conn, name=name, first_seen_at=now, last_beat_at=now, lease_expires_at=expires,
                                   ttl_seconds=ttl_seconds, beats=1, last_operator=operator, last_token_id=token_id)
                audit.append(conn, at=now, actor=operator, action="agent.register", target=name,
                             details={"ttl": ttl_seconds, "leaseExpiresAt": isoformat(expires),
                                      "tokenId": token_id})
                self._remember(name, expires, ttl_seconds, now, 1)
                return self._reply(state, kill, name, now, expires, ttl_seconds, 1, registered=True)
            agents_repo.renew(conn, name, at=now, expires_at=expires, ttl_seconds=ttl_seconds,
                                  operator=operator, token_id=token_id)
            if row.lease_expires_at <= now:
                audit.append(conn, at=now, actor=operator, action="agent.return", target=name,
                             reason=f"lease lapsed at {isoformat(row.lease_expires_at)}",
                             details={"lapsedAt": isoformat(row.lease_expires_at), "ttl": ttl_seconds,
                                      "tokenId": token_id})
                if row.lapse_alerted_for is not None and row.lapse_alerted_for == row.lease_expires_at:
                    self._alert(conn, Alert(kind="resolve", severity="high", title=f"Agent {name} is back",
                                            body=f"{name} sent a heartbeat at {isoformat(now)} after its lease "
                                                 f"lapsed at {isoformat(row.lease_expires_at)}",
                                            dedup_key=f"govcon-agent-lost-{name}", at=now,
                                            details={"agent": name}))
            beats = row.beats + 1 + self._waiting(name)
            self._remember(name, expires, ttl_seconds, now, beats)
            return self._reply(state, kill, name, now, expires, ttl_seconds, beats, registered=False)

    def beat_from_memory(self, operator: str, name: str, *, ttl: int | None = None, bound_agent: str | None = None,
                         token_id: str | None = None) -> dict[str, Any] | None:
        """The reply to a beat that ``beat`` would answer without a write, from what this process remembers,
        without a store read (safe on an event loop: no I/O but the kill-switch marker's one open). None
        when it cannot be answered so: then call ``beat``. ``name`` must be a valid agent name and ``ttl``
        None or already checked (the fast path checks both; anything else goes through ``beat``)."""
        lease = self._leases.get(name)  # only names ``beat`` accepted are remembered
        snapshot = self._state
        mono = time.monotonic()
        if (lease is None or snapshot is None or snapshot[0] + STATE_SECONDS <= mono
                or (bound_agent or operator) != name
                or self._may_beat.get(operator, float("-inf")) + MEMORY_SECONDS <= mono):
            return None
        if ttl is not None and (type(ttl) is not int or not MIN_TTL <= ttl <= MAX_TTL):
            return None  # ``beat`` says what is wrong with it
        ttl_seconds = self.default_ttl if ttl is None else ttl
        now = self.clock.now()
        _, state_at, state = snapshot
        kill = kill_switch_json(state, self.kill_marker.engaged() if self.kill_marker is not None else None)
        why = self._why_write(lease, now, ttl_seconds, state, kill)
        if why == "now" or (why == "renew" and (lease.lease_expires_at - now).total_seconds() <= DEFER_MIN_SECONDS):
            return None
        # recorded as of the state's read: a reply from a state read before an engage is no acknowledgement
        pending_at = min(now, state_at)
        with self._lock:
            if self._flusher is None:  # starting a thread would wait on the event loop: ``beat`` starts it
                return None
            if why == "renew":  # the renewal joins the next group commit; the stored lease is live until then
                lease.lease_expires_at = now + timedelta(seconds=ttl_seconds)
                self._renewals[name] = (now, lease.lease_expires_at, ttl_seconds, operator, token_id)
            lease.beats += 1
            lease.last_beat_at = max(lease.last_beat_at, pending_at)
            beats, expires = lease.beats, lease.lease_expires_at
            last, n = self._pending.get(name, (pending_at, 0))  # for the group commit (as ``_note_beat``)
            self._pending[name] = (max(last, pending_at), n + 1)
        return self._reply(state, kill, name, now, expires, lease.ttl_seconds, beats, registered=False)

    def forget_state(self) -> None:
        """Forget the state behind beats answered from memory (a change went through this process)."""
        self._state = None

    def _remember(self, name: str, expires: datetime, ttl: int, last_beat: datetime, beats: int) -> None:
        lease = _Lease(expires, ttl, last_beat, beats)
        with self._lock:
            if len(self._leases) > 100_000:
                self._leases.clear()
            self._leases[name] = lease
            self._start_flusher()  # here, on ``beat``'s thread: beats from memory need it running

    def _start_flusher(self) -> None:
        """Start the group commit's thread if it is not running (``self._lock`` held)."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="govcon-agent-beats", daemon=True)
            self._flusher.start()

    @staticmethod
    def _must_write(row: Row | _Lease, now: datetime, ttl: int, state: Row, kill: dict[str, Any]) -> bool:
        """Whether this beat must move the stored lease now. It need not while the stored lease is live,
        has this TTL, has more than RENEW_FRACTION of it left, and — with the kill switch engaged — the agent
        has beaten since the engage already (the drain counts that beat as its acknowledgement). A beat not
        written leaves the stored expiry earlier than a write would: the lease is never judged live longer
        than the agent asked for."""
        return AgentBook._why_write(row, now, ttl, state, kill) is not None

    @staticmethod
    def _why_write(row: Row | _Lease, now: datetime, ttl: int, state: Row, kill: dict[str, Any]) -> str | None:
        """None (no write), "renew" (only because at most RENEW_FRACTION of a live lease is left) or
        "now" (lapsed, a new TTL, or the drain's acknowledgement)."""
        if row.lease_expires_at <= now or row.ttl_seconds != ttl:
            return "now"
        if kill["engaged"]:
            engaged_at = state.kill_switch_at if state.kill_switch_engaged else None
            if engaged_at is None or row.last_beat_at < engaged_at:
                return "now"
        if (row.lease_expires_at - now).total_seconds() <= ttl * RENEW_FRACTION:
            return "renew"
        return None

    # --- beats not written at once: their bookkeeping, group-committed -------------------------

    def _note_beat(self, name: str, at: datetime) -> int:
        """Remember a beat for the next group commit (its count and last beat); returns how many are
        waiting for this agent."""
        with self._lock:
            last, n = self._pending.get(name, (at, 0))
            self._pending[name] = (max(last, at), n + 1)
            self._start_flusher()
            return n + 1

    def _waiting(self, name: str) -> int:
        """How many beats of ``name`` wait for the group commit (the reply's count includes them)."""
        with self._lock:
            return self._pending.get(name, (None, 0))[1]

    def _flush_loop(self) -> None:
        """Flush once a second while beats wait; the thread ends after IDLE_SECONDS without any (the next
        beat through ``beat``, on a worker thread, starts it again: never the event loop, where starting a
        thread waits for it to run — on a loaded machine, for the OS to schedule it)."""
        roles_checked = time.monotonic()
        failures = 0
        idle_since: float | None = None
        while True:
            time.sleep(FLUSH_SECONDS)
            with self._lock:
                if not self._pending and not self._renewals:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= self.idle_seconds:
                        self._flusher = None
                        return
                    continue
            idle_since = None
            try:
                self.flush()
                failures = 0
            except Exception as exc:  # bookkeeping, and renewals whose stored leases are still live
                failures += 1
                if failures == 1:
                    log.warning("could not record heartbeats' last beat and count: %s", exc)
                if failures >= GIVE_UP_FLUSHES:  # the store is gone: drop them (a lease not renewed lapses)
                    with self._lock:
                        dropped = len(self._pending) + len(self._renewals)
                        self._pending.clear()
                        self._renewals.clear()
                        self._leases.clear()
                    log.warning("gave up recording %d heartbeat(s) after %d failed group commits: %s", dropped,
                                failures, exc)
                    failures = 0
            if time.monotonic() - roles_checked >= ROLE_REFRESH_SECONDS:
                roles_checked = time.monotonic()
                try:
                    self.refresh_roles()
                except Exception as exc:  # the checks age out: beats then check the role through the store
                    log.warning("could not re-check the heartbeat role: %s", exc)

    def refresh_roles(self) -> None:
        """Re-check, in one read, the role of every operator whose beats were checked within
        2 x MEMORY_SECONDS: holders stay answerable from memory, the others are forgotten (their next
        beat goes through the store, which refuses it)."""
        allowed = ACTION_ROLES.get("heartbeat")
        started = time.monotonic()
        with self._lock:
            active = [op for op, at in self._may_beat.items() if at + 2 * MEMORY_SECONDS > started]
            for op in [op for op in self._may_beat if op not in active]:
                del self._may_beat[op]
        if not active or allowed is None:
            return
        with self.store.read() as conn:
            holders = identity_repo.holders_of(conn, allowed)
        with self._lock:
            for op in active:
                if op in holders:
                    self._may_beat[op] = max(self._may_beat.get(op, started), started)
                else:
                    self._may_beat.pop(op, None)

    def flush(self) -> int:
        """Record the waiting beats' last beat and count in one transaction; returns the agents written."""
        with self._lock:
            pending, self._pending = self._pending, {}
            renewals, self._renewals = self._renewals, {}
        if not pending and not renewals:
            return 0
        try:
            with self.store.write(serialise=False) as conn:
                agents_repo.record_beats(conn, [(name, at, n) for name, (at, n) in pending.items()])
                lost = agents_repo.renew_live_many(conn, list(renewals.items()), now=self.clock.now())
        except Exception:
            with self._lock:  # put them back for the next try
                for name, (at, n) in pending.items():
                    last, m = self._pending.get(name, (at, 0))
                    self._pending[name] = (max(last, at), n + m)
                for name, renewal in renewals.items():
                    self._renewals.setdefault(name, renewal)
                    self._leases.pop(name, None)  # until it is stored, beats of it go through the store
            raise
        if lost:  # lapsed in the store before the renewal got there: the next beat is the audited return
            with self._lock:
                for name in lost:
                    self._leases.pop(name, None)
            log.warning("%d lease renewal(s) came after the lease had lapsed: not applied (%s)", len(lost),
                        ", ".join(lost[:5]))
        return len(pending) + len(renewals)

    def _require_role(self, conn: Connection, operator: str) -> None:
        """The role heartbeats need, when the domain names one (the ``agent`` role); checked once per
        ROLE_CHECK_SECONDS per operator in this process."""
        allowed = ACTION_ROLES.get("heartbeat")
        if allowed is None:
            self._may_beat[operator] = time.monotonic()
            return
        if self._may_beat.get(operator, float("-inf")) + ROLE_CHECK_SECONDS > time.monotonic():
            return
        held = identity_repo.roles_of(conn, operator)
        if not held.intersection(allowed):
            needs = f"the role {allowed[0]}" if len(allowed) == 1 else "one of the roles " + ", ".join(allowed)
            raise PermissionDenied(f"sending heartbeats needs {needs}; {operator} "
                                   f"holds {', '.join(sorted(held)) or 'no role'}. An admin can grant it: "
                                   f"govcon roles grant {operator} {allowed[0]}")
        with self._lock:
            self._may_beat[operator] = time.monotonic()

    def _reply(self, state: Row, kill: dict[str, Any], name: str, now: datetime, expires: datetime, ttl: int,
               beats: int, *, registered: bool) -> dict[str, Any]:
        mode = state.mode or "normal"
        if kill["engaged"]:
            autonomy, reason = SUSPENDED, (f"kill switch engaged by {kill['by'] or 'unknown'}: "
                                           f"{kill['reason'] or 'no reason given'}; stop acting and finish nothing new")
        elif mode == "read_only":
            autonomy, reason = SUSPENDED, "mode read_only: observe only, every action but the read class is denied"
        elif mode == "minimal":
            autonomy, reason = GRANTED, (f"lease live until {isoformat(expires)}; mode minimal: only the "
                                         "minimal_allowed action classes act autonomously")
        else:
            autonomy, reason = GRANTED, f"lease live until {isoformat(expires)}"
        return {"agent": name, "autonomy": autonomy, "reason": reason, "killSwitch": kill, "mode": mode,
                "leaseExpiresAt": isoformat(expires), "ttl": ttl, "beatAt": isoformat(now), "beats": beats,
                "registered": registered}

    # --- the gate's hook ----------------------------------------------------------------------

    def check(self, conn: Connection, state: Row, ask: Ask, now: datetime, *,
              expiry: datetime | Literal[False] | None = None) -> GateDecision | None:
        """needs_approval when the ask names an agent whose lease is in force and not live; else None.
        One primary-key read on the gate's own connection, unless the gate's snapshot read ``expiry``
        already (False: the agent never beat)."""
        if ask.agent is None:
            return None
        if expiry is None:
            expiry = agents_repo.lease_expiry(conn, ask.agent)
        if expiry is False:
            if not self.require_lease:
                return None
            return GateDecision(NEEDS_APPROVAL, f"agent {ask.agent} holds no lease: it has never sent a heartbeat "
                                                f"([agents] require_lease = true); POST /api/agents/{ask.agent}/"
                                                "heartbeat first", ask.command_type, state.current_phase,
                                {"agent": ask.agent, "lease": None})
        if expiry > now:
            return None
        return GateDecision(NEEDS_APPROVAL, f"agent {ask.agent}'s lease lapsed at {isoformat(expiry)}: no heartbeat "
                                            "since; it must beat again before it acts autonomously",
                            ask.command_type, state.current_phase,
                            {"agent": ask.agent, "leaseLapsedAt": isoformat(expiry)})

    # --- the lapse alert (a scheduler job) -----------------------------------------------------

    def alert_lapses(self) -> int:
        """One high alert per lapsed lease with grants in flight ("agent lost with N actions in flight"),
        audited; not repeated for the same lapse. Returns how many were raised."""
        now = self.clock.now()
        with self.store.read() as conn:
            if not agents_repo.lapsed_with_grants(conn, now, limit=1):
                return 0
        with self.store.write() as conn:
            lapsed = agents_repo.lapsed_with_grants(conn, now)
            state = state_repo.get_state(conn)
            for row, n in lapsed:
                agents_repo.mark_lapse_alerted(conn, row.name, row.lease_expires_at)
                actions = "action" if n == 1 else "actions"
                audit.append(conn, at=now, actor="scheduler", action="agent.lapse", target=row.name,
                             reason=f"lease lapsed at {isoformat(row.lease_expires_at)} with {n} {actions} in flight",
                             details={"lapsedAt": isoformat(row.lease_expires_at), "inFlight": n,
                                      "lastBeatAt": isoformat(row.last_beat_at)})
                self._alert(conn, Alert(
                    kind="trigger", severity="high", title=f"Agent {row.name} lost with {n} {actions} in flight",
                    body=f"{row.name}'s lease lapsed at {isoformat(row.lease_expires_at)} (last heartbeat "
                         f"{isoformat(row.last_beat_at)}) while it holds {n} grant(s) without an outcome. Check "
                         f"what it was doing: govcon actions list --in-flight",
                    dedup_key=f"govcon-agent-lost-{row.name}", at=now,
                    details={"agent": row.name, "inFlight": n, "lapsedAt": isoformat(row.lease_expires_at)}),
                    engaged=bool(state is not None and state.kill_switch_engaged))
        return len(lapsed)

    def _alert(self, conn: Connection, alert: Alert, *, engaged: bool = False) -> None:
        if self.enqueue_alert is not None:
            self.enqueue_alert(conn, alert, engaged)

    # --- reading ------------------------------------------------------------------------------

    def list(self) -> dict[str, Any]:
        self.flush()
        now = self.clock.now()
        with self.store.read() as conn:
            rows = agents_repo.list_all(conn)
            flight = agents_repo.in_flight_by_agent(conn, now)
        return {"at": isoformat(now), "requireLease": self.require_lease,
                "agents": [agent_json(r, now, flight.get(r.name, 0)) for r in rows]}

    def show(self, name: str) -> dict[str, Any]:
        why = invalid_name(name, "agent")
        if why is not None:
            raise InvalidInput(why)
        self.flush()
        now = self.clock.now()
        with self.store.read() as conn:
            row = agents_repo.get(conn, name)
            if row is None:
                raise NotFound(f"no agent {name!r}: an agent appears with its first heartbeat; "
                               "see `govcon agents list`")
            flight = agents_repo.in_flight_by_agent(conn, now, [name]).get(name, 0)
            grants = agents_repo.in_flight_grants(conn, now, agent=name)
        doc = agent_json(row, now, flight)
        doc["grantsInFlight"] = [{"grantId": g.id, "commandType": g.command_type, "expiresAt": isoformat(g.expires_at)}
                                 for g in grants]
        return doc

    def drain(self, conn: Connection, engaged_at: datetime | None, now: datetime) -> dict[str, Any]:
        """After the kill switch: grants still in flight and agents that have not beaten since it was
        engaged. ``stopped`` once no grant is in flight and every agent whose lease was live at the engage
        has either beaten since (and so been told to stop) or lapsed."""
        since = engaged_at or now
        grants = agents_repo.in_flight_grants(conn, now)
        in_flight = sum(agents_repo.in_flight_by_agent(conn, now).values())
        waiting, lapsed, acknowledged = [], [], 0
        for row in agents_repo.live_at(conn, since):
            if row.last_beat_at >= since:
                acknowledged += 1
            elif row.lease_expires_at > now:
                waiting.append({"name": row.name, "lastBeatAt": isoformat(row.last_beat_at),
                                "leaseExpiresAt": isoformat(row.lease_expires_at)})
            else:
                lapsed.append({"name": row.name, "lastBeatAt": isoformat(row.last_beat_at),
                               "lapsedAt": isoformat(row.lease_expires_at)})
        return {"since": isoformat(since), "grantsInFlight": in_flight,
                "grants": [{"grantId": g.id, "agent": g.agent, "commandType": g.command_type,
                            "expiresAt": isoformat(g.expires_at)} for g in grants],
                "agentsNotBeaten": waiting, "agentsLapsed": lapsed, "agentsAcknowledged": acknowledged,
                "stopped": in_flight == 0 and not waiting}
