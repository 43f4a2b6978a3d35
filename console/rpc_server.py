"""The service side of client mode: a whitelist of the Governance facade's methods that a client may call,
with the caller's identity put in server-side, and the Unix socket listener that identifies each caller
by the kernel's peer credentials (SO_PEERCRED).

A client never names its own actor: for every method that acts, the argument that names the actor is
overwritten with the operator the transport established (the socket's peer uid -> its OS user name; over
HTTP the bearer token's operator). A method not in ``ROUTES``, a keyword not listed for it (``system=True``
on `prune` or `cycle.run`, ``record=True`` on `readiness.assess`), or an object where a plain value is
expected is refused before anything runs. Reads need a role too (any): on a shared store the socket's
group admits OS users, the store's roles decide what they may see and do.

The console's reads (screens.data, screens.action_view) are imported when a console client first asks:
they bring Rich, which a service without console clients never needs.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import socket
import socketserver
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from console.rpc import ProtocolError, decode, dumps, encode, error_doc, read_frame
from engine.errors import GovconError, InvalidInput, NotFound
from engine.ingest import Overlong
from engine.runner import GovernancePort, RunPlan
from storage import audit
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

    # --- dispatch ---------------------------------------------------------------------------------

    def call(self, operator: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        """(result, binary) — binary is a path whose bytes follow the answer (a backup), or None."""
        if method in SPECIAL:
            return getattr(self, "_" + method)(operator, *args, **kwargs)
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

    # --- the service's own methods ----------------------------------------------------------------

    def _run_port(self, operator: str, method: str, *args: Any, plan: dict[str, Any] | None = None,
                  **kwargs: Any) -> tuple[Any, None]:
        """One call of `govcon run`'s port; the plan comes as plain fields and is rebuilt here."""
        if method not in RUN_PORT:
            raise InvalidInput(f"the govcon service offers no run step {method!r}")
        self._require(operator, "gate.ask")
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

    def answer(self, operator: str, request: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """The answer frame for a decoded request frame, and the binary to send after it (or None)."""
        try:
            method = request.get("m")
            if not isinstance(method, str):
                raise ProtocolError("a request names its method as \"m\"")
            args = decode(request.get("a") or [])
            kwargs = decode(request.get("k") or {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ProtocolError("\"a\" must be a list and \"k\" an object")
            result, binary = self.call(operator, method, args, kwargs)
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


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


# --- the Unix socket ------------------------------------------------------------------------------

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_operator(sock: socket.socket) -> str:
    """The OS user of the connecting process, as the kernel reports it (SO_PEERCRED): not forgeable by the
    client, unlike anything it sends."""
    _pid, uid, _gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


class _Handler(socketserver.StreamRequestHandler):
    rbufsize = 65536

    def handle(self) -> None:
        service: RpcService = self.server.service  # type: ignore[attr-defined]
        try:
            operator = peer_operator(self.connection)
        except OSError as exc:
            log.warning("socket peer without credentials refused: %s", exc)
            return
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        while True:
            try:
                request = read_frame(self.rfile)
            except (ProtocolError, ValueError) as exc:
                self._send({"e": error_doc(ProtocolError(str(exc)))}, None)
                return
            except OSError:
                return
            if request is None:
                return
            frame, binary = service.answer(operator, request)
            if not self._send(frame, binary):
                return

    def _send(self, frame: dict[str, Any], binary: Path | None) -> bool:
        try:
            if binary is None:
                self.connection.sendall(dumps(frame))
                return True
            try:
                frame = {**frame, "bin": binary.stat().st_size}
                self.connection.sendall(dumps(frame))
                with binary.open("rb") as f:
                    self.connection.sendfile(f)
            finally:
                _remove(binary)
            return True
        except OSError:
            return False


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 512


class SocketListener:
    """``govcon serve --socket PATH``: the listener, in its own threads beside the HTTP server."""

    def __init__(self, service: RpcService, path: Path, *, mode: int = 0o660, group: str | None = None) -> None:
        self.path = path
        _clear_stale(path)
        old = os.umask(0o177)  # created 0600, then opened to the mode asked: never briefly world-writable
        try:
            self.server = _Server(str(path), _Handler, bind_and_activate=True)
        finally:
            os.umask(old)
        self.server.service = service  # type: ignore[attr-defined]
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
