"""The service side of client mode: a whitelist of the Governance facade's methods that a client may call,
with the caller's identity put in server-side, and the Unix socket listener that identifies each caller
by the kernel's peer credentials (SO_PEERCRED).

A client never names its own actor: for every method that acts, the argument that names the actor is
overwritten with the operator the transport established (the socket's peer uid -> its OS user name; over
HTTP the bearer token's operator). A method not in ``ROUTES``, a keyword not listed for it (``system=True``
on `prune` or `cycle.run`, ``record=True`` on `readiness.assess`), or an object where a plain value is
expected is refused before anything runs. Reads need a role too (any): on a shared store the socket's
group admits OS users, the store's roles decide what they may see and do. The socket bounds what a member
of its group can hold (SocketLimits): connections per OS user and in all, with a reserve for the kill
switch; idle connections and slow frames are closed; an operator holding no role is answered once per
connection, with small requests only.

The console's reads (screens.data, screens.action_view) are imported when a console client first asks:
they bring Rich, which a service without console clients never needs.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import selectors
import socket
import socketserver
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from console.rpc import FRAME_CHUNK, MAX_FRAME, ProtocolError, decode, dumps, encode, error_doc, load_body
from engine.domain import ACTION_ROLES, AGENT_ROLE, ROLES
from engine.errors import GovconError, InvalidInput, NotFound, PermissionDenied
from engine.ingest import Overlong
from engine.runner import GovernancePort, RunPlan
from storage import audit, identity_repo
from storage.db import StoreUnavailable
from storage.maintenance import BackupNotSupported, backup_sqlite

log = logging.getLogger("govcon.rpc")


@dataclass(frozen=True)
class Route:
    actor: int | str | None = None   # position (or keyword) of the argument naming the actor
    kw: frozenset[str] = field(default_factory=frozenset)  # keywords a client may pass
    needs: str | None = "read"       # action whose roles the caller must hold first (engine/domain.py)


def _r(actor: int | str | None = None, kw: str = "", needs: str | None = "read") -> Route:
    return Route(actor, frozenset(kw.split()), needs)


#: method -> route. ``needs=None``: the engine checks the actor's role itself (and names it when refusing).
ROUTES: dict[str, Route] = {
    # reading
    "status": _r(kw="with_readiness"), "kill_switch_status": _r(), "roles_of": _r(), "role_grants": _r(),
    "breaker_events": _r(kw="unresolved_only limit"), "trend_report": _r(kw="hours"),
    "audit_entries": _r(kw="limit search"), "audit_verify": _r(), "is_initialised": _r(),
    "metrics.collect_since": _r(), "readiness.assess": _r(), "rules.list": _r(kw="enabled_only"),
    "rules.show": _r(), "backtester.run": _r(kw="days min_samples"), "proposals.list": _r(kw="status"),
    "proposals.show": _r(), "reports.list": _r(), "reports.latest": _r(), "outbox.list": _r(kw="statuses limit"),
    "policies.applicable": _r(), "policies.explain": _r(), "actions.decisions": _r(kw="since limit"),
    "actions.wait": _r(), "actions.list": _r(kw="pending in_flight limit"), "actions.show": _r(),
    "modes.get": _r(), "agents.list": _r(), "agents.show": _r(), "calibration.report": _r(kw="by_type"),
    "kill_marker.engaged": _r(),
    "drilldown.show": _r(), "explainer.explain": _r(), "explainer.explain_doc": _r(),
    "tokens.list": _r(needs="tokens.manage"),
    "policy_book.list": _r(), "policy_book.show": _r(), "sink_book.list": _r(), "sink_book.show": _r(),
    # acting: the engine checks the actor's role
    "require": _r(0, needs=None), "grant_role": _r(0, needs=None), "revoke_role": _r(0, needs=None),
    "attest": _r(0, kw="passed evidence valid_for", needs=None), "prune": _r(0, needs=None),
    "breakers.resolve": _r(0, kw="note false_positive", needs=None), "rules.add": _r(0, needs=None),
    "rules.set": _r(0, kw="reason", needs=None), "overrides.set_breaker_mode": _r(0, needs=None),
    "overrides.revert": _r(0, needs=None), "overrides.kill_switch": _r(1, needs=None),
    "cycle.run": _r(0, needs=None), "proposals.approve": _r(0, needs=None),
    "proposals.reject": _r(0, needs=None), "proposals.extend": _r(0, needs=None),
    "outbox.retry": _r(0, kw="all_dead", needs=None), "outbox.dismiss": _r(0, kw="all_dead reason", needs=None),
    "actions.approve": _r(0, needs=None), "actions.reject": _r(0, needs=None), "modes.set": _r(0, needs=None),
    "tokens.create": _r(0, kw="expires_in agent", needs=None), "tokens.revoke": _r(0, needs=None),
    "policy_book.set": _r(0, kw="replace reason", needs=None), "policy_book.delete": _r(0, kw="reason", needs=None),
    "sink_book.set": _r(0, kw="reason", needs=None), "sink_book.delete": _r(0, kw="reason", needs=None),
    # the gate: an ask is as the caller; ``requested_by`` is always the caller
    "gate.decide": _r("requested_by", kw="confidence action_class service agent request requested_by take_grant",
                      needs="gate.ask"),
}

#: `govcon run` on a client: the governed runner's port (engine/runner.py GovernancePort), as the caller
RUN_PORT = frozenset({"require_reporter", "rollback_mandatory", "decide", "wait", "stop_reason", "report_outcome",
                      "release", "escalate", "attach_report", "now"})

#: methods of the service itself (below), not of the facade
SPECIAL = {"run_port", "hello", "ingest_lines", "ingest_objects", "backup", "audit_head", "audit_check", "sink_names",
           "console_live", "console_slow", "console_actions"}

ROLE_CACHE_SECONDS = 1.0  # a passed role check is trusted this long (a revoked role stops within a second)


class RpcService:
    """Calls from identified callers onto one Governance facade (the service's)."""

    def __init__(self, gov, *, address: str) -> None:
        self.gov = gov
        self.address = address  # what clients see instead of the store's URL
        self._passed: dict[tuple[str, str], float] = {}
        self._roles_warned = 0.0

    # --- dispatch ---------------------------------------------------------------------------------

    def call(self, operator: str, method: str, args: list[Any], kwargs: dict[str, Any], *,
             agent: str | None = None) -> tuple[Any, Any]:
        """(result, binary) — binary is a path whose bytes follow the answer (a backup), or None. ``agent``: the
        agent the caller's token is bound to (POST /api/rpc); a gate ask is then that agent's, as on POST
        /api/gate (naming another is refused)."""
        kwargs.pop("bound_agent", None)  # the transport's word, never the client's
        if method in SPECIAL:
            if method == "run_port":
                kwargs["bound_agent"] = agent
            return getattr(self, "_" + method)(operator, *args, **kwargs)
        if method == "gate.decide" and agent is not None:
            kwargs = {**kwargs, "agent": _bound(agent, kwargs.get("agent"), operator)}
        route = ROUTES.get(method)
        if route is None:
            raise InvalidInput(f"the govcon service offers no method {method!r}")
        unknown = set(kwargs) - route.kw
        if unknown:
            raise InvalidInput(f"{method}: unexpected argument {', '.join(sorted(unknown))}")
        if route.needs is not None:
            self._require(operator, route.needs)
        if isinstance(route.actor, int):
            if len(args) <= route.actor:
                raise InvalidInput(f"{method}: missing arguments")
            args = list(args)
            args[route.actor] = operator  # never the client's word for who it is
        elif isinstance(route.actor, str):
            kwargs = {**kwargs, route.actor: operator}
        target: Any = self.gov
        for part in method.split("."):
            target = getattr(target, part)
        return target(*args, **kwargs), None

    def _require(self, operator: str, action: str) -> None:
        key = (operator, action)
        if self._passed.get(key, 0.0) > time.monotonic():
            return
        self.gov.require(operator, action)
        self._passed[key] = time.monotonic() + ROLE_CACHE_SECONDS

    def connection_roles(self, operator: str) -> frozenset[str] | None:
        """The operator's roles, read for a new connection on the socket (the safety lane: its deadline, and
        never behind the ordinary reads); None when the store cannot tell (then the caller is served, as it
        was before: the kill switch must engage by its marker file when the store is unreadable)."""
        try:
            with self.gov.store.read(lane="safety") as conn:
                return frozenset(identity_repo.roles_of(conn, operator))
        except Exception as exc:  # noqa: BLE001 - unreadable, not initialised, a deadline: not an answer
            now = time.monotonic()
            if now >= self._roles_warned:  # once a minute: this is read again every second or so per caller
                self._roles_warned = now + 60.0
                log.warning("socket: the roles of %s could not be read (%s: %s): callers are served with the small "
                            "request limit until they can", operator, type(exc).__name__,
                            (str(exc).splitlines() or [""])[0])
            return None

    # --- the service's own methods ----------------------------------------------------------------

    def _run_port(self, operator: str, method: str, *args: Any, plan: dict[str, Any] | None = None,
                  bound_agent: str | None = None, **kwargs: Any) -> tuple[Any, None]:
        """One call of `govcon run`'s port; the plan comes as plain fields and is rebuilt here."""
        if method not in RUN_PORT:
            raise InvalidInput(f"the govcon service offers no run step {method!r}")
        self._require(operator, "gate.ask")
        if plan is not None and bound_agent is not None:
            plan = {**plan, "agent": _bound(bound_agent, plan.get("agent"), operator)}
        if plan is not None:
            fields: dict[str, Any] = {
                k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                for k, v in plan.items()}
            kwargs["plan"] = RunPlan(**fields)
        port = GovernancePort(self.gov, operator)
        if method in ("decide",):
            return port.decide(kwargs.pop("plan"), **kwargs), None
        if method in ("report_outcome", "escalate"):
            grant_id, *rest = args
            return getattr(port, method)(grant_id, kwargs.pop("plan"), *rest, **kwargs), None
        return getattr(port, method)(*args, **kwargs), None

    def _hello(self, operator: str) -> tuple[Any, None]:
        return {"operator": operator, "server": self.address}, None

    def _ingest_lines(self, operator: str, lines: list[Any], first_line: int = 1) -> tuple[Any, None]:
        """One batch of a file the client reads (with its own rights); line numbers as in the file."""
        self._require(operator, "ingest")
        items = [Overlong(item["overlong"]) if isinstance(item, dict) and "overlong" in item else item
                 for item in lines]
        report = self.gov.ingestor.ingest_lines(items)
        if first_line != 1:
            report.errors = [replace(e, line=e.line + first_line - 1) for e in report.errors]
        return report, None

    def _ingest_objects(self, operator: str, objects: list[Any]) -> tuple[Any, None]:
        self._require(operator, "ingest")
        return self.gov.ingestor.ingest_objects(objects), None

    def _backup(self, operator: str) -> tuple[Any, Any]:
        """A consistent copy, made in the service's private temporary directory and streamed to the client,
        which writes it where it asked with its own rights (the service never writes a client's path)."""
        self._require(operator, "db.backup")
        tmp = Path(tempfile.mkdtemp(prefix="govcon-backup-"))
        path = tmp / "copy.sqlite"
        try:
            size = backup_sqlite(self.gov.store.engine, path)
        except BaseException:
            _remove(path)
            raise
        return {"size": size}, path

    def _audit_head(self, operator: str) -> tuple[Any, None]:
        self._require(operator, "read")
        with self.gov.store.read() as conn:
            return audit.head(conn), None

    def _audit_check(self, operator: str, expect_head: str | None = None) -> tuple[Any, None]:
        self._require(operator, "read")
        report, keyed = self.gov.audit_verify_report(expect_head)
        return {"report": report, "keyed": keyed}, None

    def _sink_names(self, operator: str) -> tuple[Any, None]:
        self._require(operator, "read")
        return [s.name for s in self.gov.notifier.sinks], None

    def _console_live(self, operator: str) -> tuple[Any, None]:
        from screens.data import load_live
        self._require(operator, "read")
        return load_live(self.gov, operator), None

    def _console_slow(self, operator: str) -> tuple[Any, None]:
        from screens.data import load_slow
        self._require(operator, "read")
        return load_slow(self.gov), None

    def _console_actions(self, operator: str) -> tuple[Any, None]:
        from screens.action_view import load_actions
        self._require(operator, "read")
        return load_actions(self.gov), None

    # --- one request, whatever the transport ------------------------------------------------------

    def answer(self, operator: str, request: dict[str, Any], *, agent: str | None = None) -> tuple[dict[str, Any], Any]:
        """The answer frame for a decoded request frame, and the binary to send after it (or None). ``agent``:
        the agent the caller's token is bound to (``call``)."""
        try:
            method = request.get("m")
            if not isinstance(method, str):
                raise ProtocolError("a request names its method as \"m\"")
            args = decode(request.get("a") or [])
            kwargs = decode(request.get("k") or {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ProtocolError("\"a\" must be a list and \"k\" an object")
            result, binary = self.call(operator, method, args, kwargs, agent=agent)
            return {"r": encode(result)}, binary
        except (GovconError, ProtocolError, FileExistsError) as exc:
            return {"e": error_doc(exc)}, None
        except Exception as exc:
            if isinstance(exc, (StoreUnavailable, BackupNotSupported, NotFound)):
                return {"e": error_doc(exc)}, None
            if type(exc).__name__ in ("RuleError", "ConfigError", "MarkerError"):
                return {"e": error_doc(exc)}, None
            log.exception("rpc %s by %s failed", request.get("m"), operator)
            return {"e": {"type": "GovconError", "message": f"the govcon service failed: {type(exc).__name__}: "
                          f"{exc}", "exitCode": 1}}, None


def _bound(bound: str, named: Any, operator: str) -> str:
    """The agent of an ask by a token bound to ``bound``: that agent; naming another is refused. The CLI names
    its operator when no --agent is given (console/gate_cli.py, cli_actions.py): that means "mine", not another."""
    if named is not None and named not in (bound, operator):
        raise PermissionDenied(f"the token of {operator} is bound to agent {bound}; it cannot ask the gate for "
                               f"agent {named}")
    return bound


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


# --- the Unix socket ------------------------------------------------------------------------------

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
KILL_SWITCH_ROLES = frozenset(ACTION_ROLES["kill_switch.engage"])
GENERAL, RESERVE, WITHOUT_ROLE = "general", "kill-switch reserve", "without a role"  # the pools of connections
MiB = 1024 * 1024


@dataclass(frozen=True)
class SocketLimits:
    """What `govcon serve --socket` gives its callers (docs/deployment.md, "The socket's limits"). The socket's
    group admits OS users, and before these limits one of them holding no role could open connections until
    the process ran out of file descriptors (the HTTP server's too) and threads, or announce 64 MiB frames whose
    memory the service reserved before knowing who sent them.

    A connection is counted at accept, by the peer's uid (SO_PEERCRED), before it has a thread: beyond
    ``per_uid`` from one OS user, or beyond all the pools together, it is refused at once with an error frame
    (the client prints it). Then its operator's roles (read on the store's safety lane once per
    ``roles_cache`` seconds per uid, not per request) place it: an operator with a role in the ``total`` pool,
    and once that is full, one whose role may engage the kill switch in the ``kill_switch_reserve``; an
    operator with no role in the ``without_role`` pool, where a connection is answered once and closed: its
    one request, within ``without_role_wait`` seconds and of at most ``small_frame`` bytes, gets the answer it
    always got (``hello`` says who the caller is; anything else names the role it needs). An operator whose
    roles the store could not tell (unreadable, not initialised) is served — the kill switch then engages by
    its marker file — with the small frame limit until the store answers.
    """

    per_uid: int = 32                # a console's workers (about ten calls at once at most) and its user's commands
    total: int = 128                 # connections of operators holding a role, all together
    kill_switch_reserve: int = 8     # beyond ``total``: for operators whose role may engage the kill switch
    without_role: int = 16           # connections of operators holding no role, all together
    first_request_wait: float = 30.0  # a new connection's first request must come within this (clients send it
    #                                   at once: a connection opened to be held is closed)
    idle_timeout: float = 300.0      # no next request for this long: closed, beyond an OS user's idle_keep (IDLE)
    idle_keep: int = 16              # connections of one OS user kept however long idle: its consoles' pools
    frame_deadline: float = 10.0     # the rest of a frame, once its first byte came: a slow sender is cut off
    send_stall: float = 60.0         # a client that reads nothing of its answer for this long: closed
    without_role_wait: float = 5.0   # an operator without a role: its one request must come within this
    small_frame: int = 64 * 1024     # the most read of a request from an operator not known to hold a role
    large_per_uid: int = 128 * MiB   # requests over 1 MiB arriving or being answered: one OS user's bytes …
    large_total: int = 512 * MiB     # … and everyone's (a 64 MiB request is refused beyond them, its body unread)
    roles_cache: float = 5.0         # an operator's roles, read for a connection, are trusted this long ...
    no_role_cache: float = 1.0       # ... and that it holds none (or that the store could not tell) this long
    refused_linger: float = 1.0      # a refused connection stays open this long for its client to read why
    refused_most: int = 64           # refused connections lingering at once (the oldest are closed first)

    # IDLE: a pooled client (console/client.py _UnixTransport) whose connection the service closed while idle
    # retries the call once — on the next pooled connection when it has one, which may have been closed too: a
    # pool holding two connections closed while idle fails the call (ServiceUnavailable; for the kill switch,
    # the marker file or "NOT engaged"). A console's pool is last-in first-out: the connections beyond its
    # usual concurrency sit idle for as long as it runs, and closing them after any fixed time would fail one
    # of its calls now and then. So an idle connection is closed only while its OS user holds more than
    # ``idle_keep`` (the longest idle first): a console's pool (about ten at most) is never touched, and what
    # one user holds beyond it is reclaimed after ``idle_timeout``. A connection that never sent a request is
    # not in any pool (clients send at once): it is closed after ``first_request_wait`` whoever holds it.

    @property
    def ceiling(self) -> int:
        """Connections open at once, whoever holds them: the threads and descriptors the socket may cost."""
        return self.total + self.kill_switch_reserve + self.without_role


def peer_uid(sock: socket.socket) -> int:
    """The uid of the connecting process, as the kernel reports it (SO_PEERCRED): not forgeable by the client,
    unlike anything it sends."""
    _pid, uid, _gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return uid


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


def peer_operator(sock: socket.socket) -> str:
    """The OS user of the connecting process (SO_PEERCRED)."""
    return user_name(peer_uid(sock))


@dataclass(frozen=True)
class _Caller:
    uid: int
    operator: str
    roles: frozenset[str] | None  # None: the store could not tell
    until: float                  # time.monotonic() after which it is read again


def _busy(message: str) -> dict[str, Any]:
    return {"type": "ServiceBusy", "message": message, "exitCode": 1}


class _Admission:
    """The connections open (per uid, per pool) and the callers' roles, cached per uid."""

    def __init__(self, service: RpcService, limits: SocketLimits) -> None:
        self.service = service
        self.limits = limits
        self._lock = threading.Lock()
        self._open = 0
        self._by_uid: dict[int, int] = {}
        self._pools = {GENERAL: 0, RESERVE: 0, WITHOUT_ROLE: 0}
        self._callers: dict[int, _Caller] = {}
        self._reading: dict[int, threading.Event] = {}  # uids whose roles a thread is reading now
        self._warned: dict[tuple[int, str], float] = {}
        self._large = 0                       # bytes of large requests arriving or being answered
        self._large_by_uid: dict[int, int] = {}

    def admit(self, uid: int) -> dict[str, Any] | None:
        """At accept, in the listener's thread (no store, no user database): None when the connection may have a
        thread, else the error refusing it."""
        limits = self.limits
        with self._lock:
            mine = self._by_uid.get(uid, 0)
            if mine >= limits.per_uid:
                return self._refusal(uid, "per-uid", _busy(
                    f"{self._name(uid)} has {mine} connections open to the govcon service, the most one OS user may "
                    "have: close some (another console? commands still running?) and retry"))
            known = self._callers.get(uid)
            fresh = known is not None and known.until > time.monotonic()
            # connections still being identified count toward the ceiling too: a caller known to hold a role that
            # may engage the kill switch passes it while the reserve has room (a flood's unplaced connections
            # must not take the reserve from the incident commander)
            engager = fresh and known is not None and bool(known.roles and known.roles & KILL_SWITCH_ROLES)
            if self._open >= limits.ceiling and not (engager and self._pools[RESERVE] < limits.kill_switch_reserve):
                return self._refusal(uid, "ceiling", _busy(
                    f"the govcon service has {self._open} connections open, its limit: retry shortly"))
            if known is not None and fresh and self._pool_for(known) is None:
                return self._no_pool(known)  # known already, its pool full: no thread for it either
            self._open += 1
            self._by_uid[uid] = mine + 1
        return None

    def identify(self, uid: int) -> _Caller:
        """The caller's name and roles: cached, else read (one thread per uid reads; the others wait for it)."""
        while True:
            with self._lock:
                known = self._callers.get(uid)
                if known is not None and known.until > time.monotonic():
                    return known
                other = self._reading.get(uid)
                if other is None:
                    mine = self._reading[uid] = threading.Event()
                    break
            other.wait(5.0)
        try:
            operator = user_name(uid)
            roles = self.service.connection_roles(operator)
            ttl = self.limits.roles_cache if roles else self.limits.no_role_cache
            caller = _Caller(uid, operator, roles, time.monotonic() + ttl)
            with self._lock:
                if len(self._callers) > 4096:
                    now = time.monotonic()
                    self._callers = {k: c for k, c in self._callers.items() if c.until > now}
                self._callers[uid] = caller
            return caller
        finally:
            with self._lock:
                del self._reading[uid]
            mine.set()

    def place(self, caller: _Caller) -> tuple[str | None, dict[str, Any] | None]:
        """The pool the caller's connection takes, or the error refusing it."""
        with self._lock:
            pool = self._pool_for(caller)
            if pool is None:
                return None, self._no_pool(caller)
            self._pools[pool] += 1
            return pool, None

    def _pool_for(self, caller: _Caller) -> str | None:
        limits, roles = self.limits, caller.roles
        if roles is not None and not roles:
            return WITHOUT_ROLE if self._pools[WITHOUT_ROLE] < limits.without_role else None
        if self._pools[GENERAL] < limits.total:
            return GENERAL
        if self._pools[RESERVE] < limits.kill_switch_reserve and (roles is None or roles & KILL_SWITCH_ROLES):
            return RESERVE
        return None

    def _no_pool(self, caller: _Caller) -> dict[str, Any]:
        limits, roles, op = self.limits, caller.roles, caller.operator
        if roles is not None and not roles:
            return self._refusal(caller.uid, "no-role", _busy(
                f"{op} holds no role in this store, and the govcon service is answering {limits.without_role} "
                f"other callers without one: retry shortly (an admin can grant a role: govcon roles grant {op} "
                f"{AGENT_ROLE})"))
        if roles is not None and self._pools[RESERVE] < limits.kill_switch_reserve:
            return self._refusal(caller.uid, "reserve", _busy(
                f"the govcon service has {limits.total} connections open, its limit; the last "
                f"{limits.kill_switch_reserve} are kept for operators who may engage the kill switch "
                f"({', '.join(ACTION_ROLES['kill_switch.engage'])}), and {op} holds "
                f"{', '.join(sorted(roles))}: retry shortly"))
        return self._refusal(caller.uid, "full", _busy(
            f"the govcon service has {limits.total + limits.kill_switch_reserve} connections open, its limit "
            "(the kill switch's reserve included): retry shortly"))

    def release(self, uid: int, pool: str | None) -> None:
        with self._lock:
            self._open -= 1
            left = self._by_uid.get(uid, 1) - 1
            if left > 0:
                self._by_uid[uid] = left
            else:
                self._by_uid.pop(uid, None)
            if pool is not None:
                self._pools[pool] -= 1

    def take_large(self, caller: _Caller, size: int) -> dict[str, Any] | None:
        """``size`` bytes of a large request counted against its user's and everyone's budget; None when taken,
        else the error refusing the request (its body not read)."""
        limits, uid = self.limits, caller.uid
        with self._lock:
            mine = self._large_by_uid.get(uid, 0)
            if mine + size > limits.large_per_uid:
                return self._refusal(uid, "large-uid", _busy(
                    f"{caller.operator} has {mine / MiB:.0f} MiB of requests arriving or being answered by the govcon "
                    f"service, and this one of {size / MiB:.1f} MiB would pass the {limits.large_per_uid / MiB:.0f} "
                    "MiB one OS user may have at once: retry when those are done"))
            if self._large + size > limits.large_total:
                return self._refusal(uid, "large", _busy(
                    f"the govcon service has {self._large / MiB:.0f} MiB of large requests arriving or being "
                    f"answered, and this one of {size / MiB:.1f} MiB would pass its {limits.large_total / MiB:.0f} "
                    "MiB: retry shortly"))
            self._large_by_uid[uid] = mine + size
            self._large += size
        return None

    def give_large(self, uid: int, size: int) -> None:
        with self._lock:
            self._large -= size
            left = self._large_by_uid.get(uid, size) - size
            if left > 0:
                self._large_by_uid[uid] = left
            else:
                self._large_by_uid.pop(uid, None)

    def over_idle_keep(self, uid: int) -> bool:
        """Whether an idle connection of ``uid`` is to be closed: it holds more than ``idle_keep``."""
        with self._lock:
            return self._by_uid.get(uid, 0) > self.limits.idle_keep

    def _name(self, uid: int) -> str:
        known = self._callers.get(uid)
        return f"{known.operator} (uid {uid})" if known is not None else f"uid {uid}"

    def _refusal(self, uid: int, kind: str, error: dict[str, Any]) -> dict[str, Any]:
        """``error``; logged once a minute per uid and kind (a flood is one line a minute, not one a connection)."""
        now = time.monotonic()
        if self._warned.get((uid, kind), 0.0) <= now:
            if len(self._warned) > 4096:
                self._warned = {k: t for k, t in self._warned.items() if t > now}
            self._warned[(uid, kind)] = now + 60.0
            log.warning("socket: a connection of %s refused (more refused the next minute are not logged): %s",
                        self._name(uid), error["message"])
        return error


class _Refuser:
    """Connections refused, or closed on an error: the error frame is sent at once, then the connection stays
    open up to ``linger`` seconds — a client sends its request before it reads the answer (console/client.py),
    and a connection closed under a request still arriving breaks the client's pipe instead of telling it why
    — reading and dropping what comes, until the client closes it. One thread for all of them, started with
    the first; ``most`` at once (the oldest closed first), each read for at most DISCARD bytes."""

    DISCARD = 16 * 1024 * 1024  # a request being sent when refused (an ingest batch of 4 MiB and its escapes)

    def __init__(self, linger: float, most: int) -> None:
        self.linger = linger
        self.most = most
        self._cond = threading.Condition()
        self._new: list[socket.socket] = []
        self._stopped = False
        self._thread: threading.Thread | None = None

    def refuse(self, sock: socket.socket, error: dict[str, Any]) -> None:
        try:
            sock.setblocking(False)
            sock.send(dumps({"e": error}))  # small, and the client reads answers: it fits the socket's buffer
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        with self._cond:
            if self._stopped:
                sock.close()
                return
            self._new.append(sock)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="govcon-socket-refused", daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            for sock in self._new:
                sock.close()
            self._new.clear()
            self._cond.notify()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        pending: dict[socket.socket, list[float]] = {}  # -> [until, bytes read]

        def drop(sock: socket.socket) -> None:
            del pending[sock]
            selector.unregister(sock)
            sock.close()

        try:
            while True:
                with self._cond:
                    if not pending and not self._new and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                    new, self._new = self._new, []
                now = time.monotonic()
                for sock in new:
                    try:
                        selector.register(sock, selectors.EVENT_READ)
                    except (OSError, ValueError):  # closed meanwhile
                        sock.close()
                        continue
                    pending[sock] = [now + self.linger, 0]
                while len(pending) > self.most:
                    drop(next(iter(pending)))
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj  # type: ignore[assignment]
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    entry = pending[sock]
                    entry[1] += len(data)
                    if not data or entry[1] > self.DISCARD:
                        drop(sock)
                now = time.monotonic()
                for sock in [s for s, (until, _) in pending.items() if until <= now]:
                    drop(sock)
        finally:
            for sock in list(pending):
                drop(sock)
            selector.close()


class _FrameLate(Exception):
    """The rest of a frame did not come within the deadline."""


class _FrameRefused(Exception):
    """A large frame the budget of large requests has no room for (SocketLimits.large_per_uid, large_total)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


class _FrameTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _Frames:
    """The frames of one connection, read from the socket as they arrive: never more memory than what came,
    whatever the length announced. Waiting for a frame's first byte ends after ``wait`` seconds
    (TimeoutError); the rest of a frame, once any of it came, must come within ``deadline`` seconds in all
    (_FrameLate), however it trickles in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.began: float | None = None  # when the frame being read began to arrive

    def next(self, limit: int, wait: float, deadline: float, large: _Large | None = None) -> dict[str, Any] | None:
        """The next frame's JSON; None at a clean end. A frame longer than ``limit`` raises _FrameTooLarge
        having read its length only (read again with a higher limit, it goes on); one longer than FRAME_CHUNK
        is counted by ``large`` before its body is read (which may raise _FrameRefused)."""
        buf, sock = self.buf, self.sock
        while True:
            if len(buf) >= 4:
                size = int.from_bytes(buf[:4], "big")
                if size > limit:
                    raise _FrameTooLarge(size)
                if size > FRAME_CHUNK and large is not None:
                    large.take(size)
                if len(buf) >= 4 + size:
                    if len(buf) == 4 + size:  # the usual case: the body without another copy of it
                        del buf[:4]
                        body, self.buf = buf, bytearray()
                        self.began = None
                    else:
                        body = buf[4:4 + size]
                        del buf[:4 + size]
                        self.began = time.monotonic()
                    return load_body(body)
                want = 4 + size - len(buf)
            else:
                want = 4 - len(buf)
            if buf:
                if self.began is None:
                    self.began = time.monotonic()
                left = self.began + deadline - time.monotonic()
                if left <= 0:
                    raise _FrameLate()
                sock.settimeout(left)
            elif sock.gettimeout() != wait:  # the usual case sets nothing: no system call per request
                sock.settimeout(wait)
            try:
                chunk = sock.recv(min(max(want, 65536), FRAME_CHUNK))
            except TimeoutError:
                if buf:
                    raise _FrameLate() from None
                raise
            if not chunk:
                if buf:
                    raise ProtocolError("the connection ended inside a frame")
                return None
            buf += chunk


def _send(sock: socket.socket, frame: dict[str, Any], binary: Path | None, timeout: float) -> bool:
    """The answer (and the binary after it); False when the client is gone or reads nothing for ``timeout``."""
    try:
        if sock.gettimeout() != timeout:
            sock.settimeout(timeout)
        if binary is None:
            sock.sendall(dumps(frame))
            return True
        try:
            frame = {**frame, "bin": binary.stat().st_size}
            sock.sendall(dumps(frame))
            with binary.open("rb") as f:
                sock.sendfile(f)
        finally:
            _remove(binary)
        return True
    except OSError:
        return False


def _too_large(caller: _Caller, size: int, limit: int) -> dict[str, Any]:
    op = caller.operator
    if caller.roles is None:
        return error_doc(ProtocolError(
            f"the store could not be read to check {op}'s roles: until it can, the govcon service reads at most "
            f"{limit:,} bytes of a request, and this one has {size:,}"))
    if not caller.roles:
        return error_doc(PermissionDenied(
            f"a request of {size:,} bytes needs a role (any of {', '.join(ROLES)}); {op} holds no role, and the govcon "
            f"service reads at most {limit:,} bytes of a request from an operator without one. An admin can grant "
            f"it: govcon roles grant {op} {AGENT_ROLE}"))
    return error_doc(ProtocolError(f"a frame of {size:,} bytes is more than the {limit:,} allowed"))


def _serve_connection(server: _Server, sock: socket.socket, caller: _Caller, pool: str) -> dict[str, Any] | None:
    """One admitted connection's requests, in turn; the error to send before closing it, if any."""
    limits = server.limits
    once = pool == WITHOUT_ROLE  # answered once, then closed
    wait = limits.without_role_wait if once else limits.first_request_wait
    limit = MAX_FRAME if caller.roles else limits.small_frame
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    frames = _Frames(sock)
    held = _Large(server.admission, caller)
    try:
        return _requests(server, sock, caller, frames, once, wait, limit, held)
    finally:
        held.give()


class _Large:
    """The bytes of a connection's large request (over FRAME_CHUNK), taken from the budget when its length is
    read and given back once it is answered (SocketLimits.large_per_uid, large_total)."""

    def __init__(self, admission: _Admission, caller: _Caller) -> None:
        self.admission = admission
        self.caller = caller
        self.size = 0

    def take(self, size: int) -> None:
        if self.size:  # this frame's already (its length is looked at again after a limit is raised)
            return
        error = self.admission.take_large(self.caller, size)
        if error is not None:
            raise _FrameRefused(error)
        self.size = size

    def give(self) -> None:
        if self.size:
            self.admission.give_large(self.caller.uid, self.size)
            self.size = 0


def _requests(server: _Server, sock: socket.socket, caller: _Caller, frames: _Frames, once: bool, wait: float,
              limit: int, large: _Large) -> dict[str, Any] | None:
    limits, service = server.limits, server.service
    answered = False
    while True:
        try:
            request = frames.next(limit, wait, limits.frame_deadline, large)
        except _FrameRefused as exc:
            return exc.error
        except _FrameTooLarge as exc:
            if caller.roles is None:  # the store could not tell at connect: it may now
                caller = server.admission.identify(caller.uid)
                if caller.roles:
                    limit = MAX_FRAME
                    continue
            return _too_large(caller, exc.size, limit)
        except _FrameLate:
            log.info("socket: a request of %s did not arrive within %g s: closed", caller.operator,
                     limits.frame_deadline)
            return error_doc(ProtocolError(f"the rest of the request did not arrive within {limits.frame_deadline:g} "
                                           "s: the connection is closed"))
        except TimeoutError:
            if not answered or server.admission.over_idle_keep(caller.uid):
                return None  # no first request: closed; idle beyond its user's idle_keep: closed
            continue  # idle, in a pool (SocketLimits, IDLE): kept
        except (ProtocolError, ValueError) as exc:
            return error_doc(ProtocolError(str(exc)))
        except OSError:
            return None
        if request is None:
            return None
        frame, binary = service.answer(caller.operator, request)
        del request
        large.give()  # answered: before its answer is sent, so that the client's next request finds it given back
        if not _send(sock, frame, binary, limits.send_stall) or once:
            return None
        wait, answered = limits.idle_timeout, True


class _Server(socketserver.UnixStreamServer):
    """Accepts in one thread; a connection admitted gets a thread of its own, a refused one none (SocketLimits)."""

    allow_reuse_address = False
    request_queue_size = 512

    def __init__(self, path: str, service: RpcService, limits: SocketLimits) -> None:
        self.service = service
        self.limits = limits
        self.admission = _Admission(service, limits)
        self.refuser = _Refuser(limits.refused_linger, limits.refused_most)
        super().__init__(path, socketserver.BaseRequestHandler, bind_and_activate=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        try:
            uid = peer_uid(sock)
        except OSError as exc:
            log.warning("socket peer without credentials refused: %s", exc)
            self.shutdown_request(sock)
            return
        refusal = self.admission.admit(uid)
        if refusal is not None:
            self.refuser.refuse(sock, refusal)
            return
        try:
            threading.Thread(target=self._serve, args=(sock, uid), name="govcon-socket-conn", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had
            self.admission.release(uid, None)
            self.refuser.refuse(sock, _busy(f"the govcon service cannot start a thread for the call ({exc}): "
                                            "retry shortly"))

    def _serve(self, sock: socket.socket, uid: int) -> None:
        pool: str | None = None
        error: dict[str, Any] | None = None
        try:
            caller = self.admission.identify(uid)
            pool, error = self.admission.place(caller)
            if pool is not None:
                error = _serve_connection(self, sock, caller, pool)
        except Exception:
            log.exception("socket: a connection of uid %d failed", uid)
        finally:
            self.admission.release(uid, pool)
            if error is not None:
                self.refuser.refuse(sock, error)
            else:
                self.shutdown_request(sock)


class SocketListener:
    """``govcon serve --socket PATH``: the listener, in its own threads beside the HTTP server; ``limits``
    (SocketLimits) are the defaults unless a test asks for others."""

    def __init__(self, service: RpcService, path: Path, *, mode: int = 0o660, group: str | None = None,
                 limits: SocketLimits | None = None) -> None:
        self.path = path
        _clear_stale(path)
        old = os.umask(0o177)  # created 0600, then opened to the mode asked: never briefly world-writable
        try:
            self.server = _Server(str(path), service, limits or SocketLimits())
        finally:
            os.umask(old)
        if group is not None:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                self.server.server_close()
                path.unlink(missing_ok=True)
                raise InvalidInput(f"--socket-group {group}: no such group") from None
            os.chown(path, -1, gid)
        os.chmod(path, mode)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="govcon-socket", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.refuser.stop()
        self.path.unlink(missing_ok=True)


def _clear_stale(path: Path) -> None:
    """A socket file left by a server that is gone is removed; one a live server answers on is not."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_socket():
        raise InvalidInput(f"--socket {path}: a file that is not a socket is there; remove it or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise InvalidInput(f"--socket {path}: another govcon serve answers there already")
