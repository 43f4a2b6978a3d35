"""The gate (policy decision point): may an agent run this command autonomously right now?

Decisions, in order: kill switch engaged (in the store or by its marker file) -> deny; store unreadable, or
its SQLite file replaced or removed under this process -> deny (fail closed); mode read_only -> deny (but the
read class); type paused by a breaker -> needs_approval; phase L3 -> needs_approval; type not whitelisted ->
needs_approval; mode minimal and a class it does not allow -> needs_approval; the ask names an agent without a
live lease (engine/agents.py) -> needs_approval; a policy refusing (rate limit, interval, concurrency,
confidence, maintenance window) -> its decision; else allow.

An allow is not only an answer: it issues a grant that takes budget from that moment (DESIGN.md,
"Governed actions"). An allow is always judged inside the one serialised write transaction that also
stores the grant, so N simultaneous asks against k left get k allows. While a type's last answer was a
refusal its asks are judged on a read first (refusals take no write lock); while it was an allow they
are judged once, in the write. A gate that cannot write the grant denies. ``request=True`` queues a
needs_approval answer as an action request for a human. Every decision goes to the decision log.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from engine.clock import Clock
from engine.domain import Decision
from storage import actions_repo
from storage.db import change_watch
from storage.store import Store

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from engine.actions import ActionBook

#: the gate's answers (engine/domain.py ``Decision``, a StrEnum: JSON and stored values stay the plain strings)
ALLOW, NEEDS_APPROVAL, DENY = Decision.ALLOW, Decision.NEEDS_APPROVAL, Decision.DENY
EXIT_CODES: dict[str, int] = {ALLOW: 0, NEEDS_APPROVAL: 3, DENY: 4}
MODES: tuple[str, ...] = ("normal", "minimal", "read_only")
#: the action class that read_only mode still lets through (seed 003: "read-only: observe, never act")
READ_CLASS = "read"
DEFAULT_MINIMAL_ALLOWED: frozenset[str] = frozenset({"read", "log_rotation", "clear_cache"})
#: command types, services, agents and action classes: a word of these characters (no spaces, no escapes)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}")


@dataclass(frozen=True)
class Ask:
    """What an agent asks the gate: the inputs of one decision."""

    command_type: str
    confidence: float | None = None
    action_class: str | None = None
    service: str | None = None
    agent: str | None = None


@dataclass(frozen=True)
class GateDecision:
    decision: str
    reason: str
    command_type: str
    phase: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]

    @property
    def grant_id(self) -> str | None:
        return self.extra.get("grantId")

    @property
    def request_id(self) -> str | None:
        return self.extra.get("requestId")

    def with_extra(self, **more: Any) -> GateDecision:
        return replace(self, extra={**self.extra, **more})

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "commandType": self.command_type,
                "phase": self.phase, **self.extra}


class PolicyCheck(Protocol):
    """What the gate asks of its policies (engine/policies.py ``PolicyEngine``)."""

    def check(self, conn: Any, state: Any, ask: Any, now: datetime, snap: Any = None,
              entries: dict[tuple[Any, ...], tuple[Any, ...]] | None = None, *,
              frozen: bool = False) -> tuple[GateDecision | None, dict[str, Any]]: ...


class LeaseCheck(Protocol):
    """What the gate asks of the agents' leases (engine/agents.py ``AgentBook``)."""

    def check(self, conn: Connection, state: Any, ask: Any, now: datetime, *,
              expiry: datetime | Literal[False] | None = None) -> GateDecision | None: ...


class KillMarkerLike(Protocol):
    def engaged(self) -> Any: ...


def invalid_name(value: str | None, what: str) -> str | None:
    """Why ``value`` is not a usable name (command type, service, agent, action class), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        shown = repr(value)[:60]
        return (f"{what} {shown} is not a name: use 1-200 letters, digits and _ . : / @ + - "
                "(starting with a letter or digit)")
    return None


class Gate:
    def __init__(self, store: Store, clock: Clock, *, policy: PolicyCheck | None = None,
                 actions: ActionBook | None = None, kill_marker: KillMarkerLike | None = None,
                 minimal_allowed: frozenset[str] = DEFAULT_MINIMAL_ALLOWED,
                 on_decision: Callable[[GateDecision], None] | None = None,
                 leases: LeaseCheck | None = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        self.actions = actions
        self.kill_marker = kill_marker
        self.minimal_allowed = minimal_allowed
        self.on_decision = on_decision
        self.leases = leases  # engine/agents.py: an ask naming an agent without a live lease needs approval
        self._allowed_last: dict[str, bool] = {}  # per command type: was the last decision an allow?
        self._group = GroupCommit(self._write_group)
        self._refresh_lock = threading.Lock()
        self._refresher: threading.Thread | None = None
        self._refresh_wanted = threading.Event()
        self._watch: Any = _UNSET  # storage.db.ChangeWatch on SQLite (made on first use), else None
        #: per ask shape: (change token, when read, snapshot row, reused-count entries) (``_judge_read``)
        self._kept: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def decide(self, command_type: str, *, confidence: float | None = None, action_class: str | None = None,
               service: str | None = None, agent: str | None = None, request: bool = False,
               requested_by: str | None = None, take_grant: bool = True) -> GateDecision:
        """Decide; an allow issues a grant (unless ``take_grant`` is False: a dry run), and with
        ``request`` a needs_approval answer queues an action request."""
        ask = Ask(command_type, confidence, action_class, service, agent)
        now = self.clock.now()
        logged = False
        try:
            decision, logged = self._decide(ask, now, request=request, requested_by=requested_by,
                                            take_grant=take_grant)
        except Exception as exc:  # fail closed: whatever went wrong, nothing runs autonomously
            decision = GateDecision(DENY, f"store unreachable or unreadable, failing closed: {_brief(exc)}",
                                    command_type if isinstance(command_type, str) else "", None)
        if not logged and self.actions is not None:  # grants and requests were logged with them
            self.actions.log_decision_later(ask, decision, now)
        if self.on_decision is not None:
            self.on_decision(decision)
        stale = getattr(self.policy, "stale_counts", None)
        if stale is not None and stale():
            self._refresh_counts()
        return decision

    def _refresh_counts(self) -> None:
        """Wake the thread that counts the policies' aging windows again (started once, waits on an event:
        the ask never waits for it), so that an ask seldom pays a full count (engine/policies.py
        ``refresh_stale``)."""
        if self._refresher is None:
            with self._refresh_lock:
                if self._refresher is None:
                    self._refresher = threading.Thread(target=self._refresh_run, name="govcon-gate-counts",
                                                       daemon=True)
                    self._refresher.start()
        self._refresh_wanted.set()

    def _refresh_run(self) -> None:
        while True:
            self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            try:
                with self.store.read() as conn:
                    getattr(self.policy, "refresh_stale")(conn, self.clock.now())  # noqa: B009 (not in the protocol)
            except Exception:  # an ask counts the window itself then, as before
                pass

    def _decide(self, ask: Ask, now: datetime, *, request: bool, requested_by: str | None,
                take_grant: bool) -> tuple[GateDecision, bool]:
        """(the decision, whether it was logged already)."""
        refusal = self._refuse_input(ask)
        if refusal is not None:
            return refusal, False
        marker = self.kill_marker.engaged() if self.kill_marker is not None else None
        if marker is not None:
            return GateDecision(DENY, _marker_reason(marker), ask.command_type, None), False
        replaced = self.store.replaced()  # a kept snapshot would answer from a file nobody else uses any more
        if replaced is not None:
            return GateDecision(DENY, replaced, ask.command_type, None), False
        if take_grant and self.actions is not None and self._allowed_last.get(ask.command_type):
            # the type's last answer was an allow: judge once, under the write lock (a refusal is logged there)
            decision, logged = self._grant(ask, now, requested_by, request=request)
            self._note(ask.command_type, decision)
            return decision, logged
        decision = self._judge_read(ask, now)
        self._note(ask.command_type, decision)
        if self.actions is None or not take_grant:
            if decision.decision == NEEDS_APPROVAL and request and self.actions is not None:
                return self._request(ask, decision, now, requested_by)  # a dry run's request: no grant either way
            return decision, False
        if decision.decision == ALLOW or (decision.decision == NEEDS_APPROVAL and request):
            # judged again in the write, which acts on what it finds there: the store may have changed since
            # the read (an outcome freed a slot, a lease was renewed, a probe went out), so an allow found
            # there issues its grant and a needs_approval queues its request, whichever the read said
            return self._grant(ask, now, requested_by, request=request)
        return decision, False

    def _judge_read(self, ask: Ask, now: datetime) -> GateDecision:
        """The decision on a read, changing nothing. On SQLite the snapshot it judges is kept with the store's
        change token (``storage.db.ChangeWatch``, taken before the read) and judged again at a later ``now``
        while nothing at all was committed to the store since — by any connection of any process: a kill switch,
        a mode, a lease, a grant, an event — and for at most SNAPSHOT_LIFE. What time alone changes is judged
        again from it (leases, min_interval, maintenance windows); counts can only have fallen since (grants and
        runs aging out of a window, grants expiring), except runs stamped ahead of the clock entering the window,
        which such a reused answer sees up to SNAPSHOT_LIFE late. Only answers that take no grant come from
        here: an allow that takes one is always judged again in the serialised write."""
        watch = self._change_watch()
        token = watch.token() if watch is not None else None
        key = (ask.command_type, ask.agent if self.leases is not None else None, ask.service, ask.action_class)
        if token is not None:
            kept = self._kept.get(key)
            if kept is not None and kept[0] == token and kept[1] <= now < kept[1] + SNAPSHOT_LIFE:
                try:
                    decision = self._judge(_NO_STORE, ask, now, kept[2], kept[3], frozen=True)
                    return _half_open(_NO_STORE, ask, decision, kept[2], now)
                except NeedsStore:  # the judgement needs a read the snapshot does not hold (stable_for, …)
                    pass
        with self.store.read(lane="safety") as conn:
            snap, entries = self.snapshot(conn, ask, now)
            decision = _half_open(conn, ask, self._judge(conn, ask, now, snap, entries), snap, now)
        if token is not None:
            if len(self._kept) > 10_000:
                self._kept.clear()
            self._kept[key] = (token, now, snap, entries)
        return decision

    def _change_watch(self) -> Any:
        watch = self._watch
        if watch is _UNSET:
            with self._refresh_lock:
                if self._watch is _UNSET:
                    self._watch = change_watch(self.store.engine)
            watch = self._watch
        return watch

    def _note(self, command_type: str, decision: GateDecision) -> None:
        """Remember whether the type was allowed: a read first only pays when the answer is a refusal."""
        if len(self._allowed_last) > 10_000:
            self._allowed_last.clear()
        self._allowed_last[command_type] = decision.decision == ALLOW

    def _refuse_input(self, ask: Ask) -> GateDecision | None:
        ctype = ask.command_type
        if not isinstance(ctype, str) or not ctype.strip():
            return GateDecision(DENY, "no command type given", ctype if isinstance(ctype, str) else "", None)
        for value, what in ((ctype, "command type"), (ask.service, "service"), (ask.agent, "agent"),
                            (ask.action_class, "action class")):
            why = invalid_name(value, what)
            if why is not None:
                return GateDecision(DENY, why, ctype, None)
        c = ask.confidence
        if c is not None:
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
                return GateDecision(DENY, f"confidence {c!r} is not a number from 0 to 1", ctype, None)
            if not 0.0 <= c <= 1.0:
                return GateDecision(DENY, f"confidence {c} is outside 0..1", ctype, None)
        return None

    def judge(self, conn: Connection, ask: Ask, now: datetime) -> GateDecision:
        """The decision over one connection, changing nothing (the write path calls it again under the lock)."""
        return self._judge(conn, ask, now, *self.snapshot(conn, ask, now))

    def snapshot(self, conn: Connection, ask: Ask, now: datetime, *,
                 audit_head: bool = False) -> tuple[Any, dict[Any, Any]]:
        """What judging ``ask`` reads, in one statement (``actions_repo.gate_snapshot``): the state row with
        the agent's lease, the half-open flag, the policies' grant counts and the update of their reused
        counts of runs without a grant (and with ``audit_head`` the audit chain's newest entry, for the
        grant's audit entry); and the reused entries those updates start from. The row is None when the
        store has no state."""
        actions_repo.plan_once(conn)
        specs: tuple[Any, ...] = ()
        params: dict[str, Any] = {}
        entries: dict[Any, Any] = {}
        count_specs = getattr(self.policy, "count_specs", None)
        if count_specs is not None:
            specs, params, entries = count_specs(ask, now)
        newest = any(s is not None and (s.day_cap is not None or s.week_cap is not None) for s in specs)
        row = actions_repo.gate_snapshot(
            conn, command_type=ask.command_type, now=now,
            agent=ask.agent if self.leases is not None else None, service=ask.service, specs=specs,
            newest=newest, audit_head=audit_head, params=params)
        return row, entries

    def _judge(self, conn: Any, ask: Ask, now: datetime, state: Any, entries: dict[Any, Any] | None = None, *,
               frozen: bool = False) -> GateDecision:
        ctype = ask.command_type
        if state is None:
            return GateDecision(DENY, "the store has no governance state (not initialised)", ctype, None)
        phase = state.current_phase
        if state.kill_switch_engaged:
            return GateDecision(DENY, f"kill switch engaged by {state.kill_switch_by}: "
                                      f"{state.kill_switch_reason}", ctype, phase)
        mode = getattr(state, "mode", None) or "normal"
        if mode == "read_only" and ask.action_class != READ_CLASS:
            return GateDecision(DENY, "mode read_only: every action but the read class is denied",
                                ctype, phase, {"mode": mode})
        if ctype in (state.paused_command_types or []):
            return GateDecision(NEEDS_APPROVAL, f"{ctype} is paused by a circuit breaker until "
                                                "its event is resolved", ctype, phase)
        if phase == "L3":
            return GateDecision(NEEDS_APPROVAL, "phase L3: every command needs human approval", ctype, phase)
        if ctype not in (state.command_whitelist or []):
            return GateDecision(NEEDS_APPROVAL, f"{ctype} is not on the {phase} whitelist", ctype, phase)
        if mode == "minimal" and ask.action_class not in self.minimal_allowed:
            allowed = ", ".join(sorted(self.minimal_allowed)) or "none"
            return GateDecision(NEEDS_APPROVAL, f"mode minimal: only the action classes {allowed} act "
                                                "autonomously", ctype, phase, {"mode": mode})
        if self.leases is not None and ask.agent is not None:
            expiry = _lease_of(state)  # read by the snapshot (else one primary-key read)
            lapsed = (self.leases.check(conn, state, ask, now) if expiry is _NO_LEASE_READ
                      else self.leases.check(conn, state, ask, now, expiry=expiry))
            if lapsed is not None:
                return lapsed
        extra: dict[str, Any] = {}
        if self.policy is not None:
            if not hasattr(self.policy, "count_specs"):
                if frozen:
                    raise NeedsStore("a policy without count_specs reads the store itself")
                refused, extra = self.policy.check(conn, state, ask, now)
            elif frozen:
                refused, extra = self.policy.check(conn, state, ask, now, snap=state, entries=entries, frozen=True)
            else:
                refused, extra = self.policy.check(conn, state, ask, now, snap=state, entries=entries)
            if refused is not None:
                return refused
        return GateDecision(ALLOW, f"{ctype} is whitelisted at {phase}", ctype, phase, extra)

    def _grant(self, ask: Ask, now: datetime, requested_by: str | None, *,
               request: bool = False) -> tuple[GateDecision, bool]:
        """Judge under the store's write lock and issue the grant in the same transaction. Called after an
        allow on a read (judged again here), or directly when the type was allowed last (``request``: a
        needs_approval answer queues its action request in the same transaction). Concurrent callers are
        group-committed (``GroupCommit``): each ask is judged in turn, seeing the grants before it."""
        assert self.actions is not None
        result: tuple[GateDecision, bool] = self._group.submit((ask, now, requested_by, request))
        return result

    def _write_group(self, items: list[tuple[Any, ...]]) -> list[tuple[GateDecision, bool]]:
        """One serialised write transaction for the asks of a group, answered only once it has committed.
        With several asks each runs in a savepoint: one that fails is denied alone. If the commit fails,
        every ask of the group is denied (nothing of it was stored)."""
        results: list[tuple[GateDecision, bool]] = []
        try:
            with self.store.write(lane="safety") as conn:
                for item in items:
                    if len(items) == 1:
                        results.append(self._judge_in_write(conn, *item))
                        continue
                    try:
                        with conn.begin_nested():
                            results.append(self._judge_in_write(conn, *item))
                    except Exception as exc:
                        self._forget_grant_times()
                        results.append((_cannot_grant(item[0], exc), False))
        except Exception as exc:
            self._forget_grant_times()
            return [(_cannot_grant(item[0], exc), False) for item in items]
        return results

    def _forget_grant_times(self) -> None:
        """A write that failed may have moved the policies' kept grant times to a head that was never stored:
        drop them (they could not match a stored head anyway; the next ask reads them again)."""
        forget = getattr(self.policy, "forget_grant_times", None)
        if forget is not None:
            forget()

    def _judge_in_write(self, conn: Connection, ask: Ask, now: datetime, requested_by: str | None,
                        request: bool) -> tuple[GateDecision, bool]:
        assert self.actions is not None
        snap, entries = self.snapshot(conn, ask, now, audit_head=True)  # one statement: state, lease, counts…
        decision = self._judge(conn, ask, now, snap, entries)
        if snap is not None and snap.g_half_open is not None:
            from engine import recovery  # (here: recovery imports the gate)
            decision = recovery.judge(conn, ask, decision, now)  # a half-open type: one probe at a time
        if decision.decision == NEEDS_APPROVAL and request:
            return self.actions.open_request(conn, ask, decision, now, requested_by=requested_by), True
        if decision.decision != ALLOW:  # e.g. the budget went to a concurrent ask
            self.actions.log_decision(conn, ask, decision, now)
            return decision, True
        granted = self.actions.issue_grant(conn, ask, decision, now, requested_by=requested_by, head=snap)
        after = conn.info.pop(actions_repo.HEAD_WRITTEN, None)
        written = getattr(self.policy, "grant_written", None)  # the policies' kept grant times move with the head
        if written is not None and after is not None and snap is not None:
            written(conn, ask, now, snap.audit_head_hash, after, entries)
        return granted, True

    def _request(self, ask: Ask, decision: GateDecision, now: datetime,
                 requested_by: str | None) -> tuple[GateDecision, bool]:
        """A dry run's ask with ``request`` (takes no grant): the request queued if the write still judges
        needs_approval. Every other ask with ``request`` goes through ``_grant``, which grants an allow."""
        assert self.actions is not None
        try:
            with self.store.write(lane="safety") as conn:
                again = self.judge(conn, ask, now)
                if again.decision != NEEDS_APPROVAL:  # e.g. the kill switch was engaged meanwhile
                    self.actions.log_decision(conn, ask, again, now)
                    return again, True
                return self.actions.open_request(conn, ask, again, now, requested_by=requested_by), True
        except Exception as exc:
            return decision.with_extra(requestError=f"the action request could not be queued: {_brief(exc)}"), False


class GroupCommit:
    """Leader/follower group commit: callers queue their item; whoever takes the lock next writes every item
    waiting, in one call of ``write_group`` (a list in, a result per item out, in order), and hands each
    caller its own result. One caller alone is a group of one; callers never wait for a timer."""

    def __init__(self, write_group: Callable[[list[Any]], list[Any]], *, max_group: int = 64) -> None:
        self._write_group = write_group
        self._max_group = max_group
        self._leader = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Slot] = []

    def submit(self, item: Any) -> Any:
        slot = _Slot(item)
        with self._queue_lock:
            self._queue.append(slot)
        while not slot.done:
            with self._leader:
                if slot.done:  # a leader before us wrote it
                    break
                with self._queue_lock:
                    group, self._queue = self._queue[:self._max_group], self._queue[self._max_group:]
                try:
                    results = self._write_group([s.item for s in group])
                except BaseException as exc:  # write_group answers every item itself; never leave one waiting
                    results = [exc] * len(group)
                for waiting, result in zip(group, results, strict=True):
                    waiting.result, waiting.done = result, True
        if isinstance(slot.result, BaseException):
            raise slot.result
        return slot.result


class _Slot:
    __slots__ = ("item", "result", "done")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.result: Any = None
        self.done = False


_NO_LEASE_READ = object()
_UNSET = object()
#: how long after its read a snapshot may answer a decision that takes no grant (``Gate._judge_read``), while
#: nothing was committed to the store since
SNAPSHOT_LIFE = timedelta(seconds=1)


class NeedsStore(Exception):
    """A judgement from a kept snapshot needed a read of the store: judge on a fresh read instead."""


class _NoStore:
    """The connection a judgement from a kept snapshot gets: any use of it is a read it must not make."""

    def __getattr__(self, name: str) -> Any:
        raise NeedsStore(f"the kept snapshot does not hold what {name} reads")


_NO_STORE = _NoStore()


def _half_open(conn: Any, ask: Ask, decision: GateDecision, snap: Any, now: datetime) -> GateDecision:
    """An allow of a half-open type judged on a read as the write will judge it (engine/recovery.py ``judge``):
    needs_approval while a probe is in flight. A dry run (``take_grant=False``) is answered from here, and said
    "would run" while a real ask would have waited."""
    if decision.decision != ALLOW or snap is None or getattr(snap, "g_half_open", None) is None:
        return decision
    from engine import recovery  # (here: recovery imports the gate)
    return recovery.judge(conn, ask, decision, now)


def _lease_of(state: Any) -> Any:
    """The agent's lease expiry from the snapshot row: False when it never beat (as agents_repo.lease_expiry),
    or a marker that it was not read (a state row from elsewhere)."""
    mapping = getattr(state, "_mapping", None)
    if mapping is None or "g_lease" not in mapping:
        return _NO_LEASE_READ
    return False if mapping["g_lease"] is None else mapping["g_lease"]


def _cannot_grant(ask: Ask, exc: BaseException) -> GateDecision:
    return GateDecision(DENY, f"cannot record the grant, so nothing may run (failing closed): {_brief(exc)}",
                        ask.command_type, None)


def _brief(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


def _marker_reason(marker: Any) -> str:
    by = getattr(marker, "by", None)
    reason = getattr(marker, "reason", None)
    path = getattr(marker, "path", None)
    where = f" (marker file {path})" if path else " (marker file)"
    who = f" by {by}" if by else ""
    return f"kill switch engaged{who}{where}" + (f": {reason}" if reason else "")
