"""Client mode: ``GOVCON_SERVER`` (or ``server`` in the config file) names the govcon service, and the CLI
and the console do everything through it — they never open the store.

``RemoteGovernance`` has the Governance facade's shape (``gov.status()``, ``gov.rules.list()``,
``gov.overrides.kill_switch(...)`` …): each call is one request to the service (console/rpc.py), which
runs it on its own facade as the operator the transport established — the Unix socket's peer uid, or
the bearer token's operator over HTTP(S) — whatever actor the client passes. So the CLI's and the
console's rendering code is the same in both modes, and so are their output and exit codes.

Files named on the command line stay the client's: ``ingest FILE`` is read here, with the client's
rights, and sent in batches; ``db backup PATH`` receives the service's copy and writes it here.

Imports beyond the socket and the frames are deferred to the methods that use them: `govcon gate`
(console/gate_cli.py) imports this module on its hot path (tests/integration/test_gate_cli_lean.py), and
httpx is needed only for an https:// server.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from console.rpc import ProtocolError, decode, dumps, encode, read_frame
from engine.errors import GovconError

TYPE_CHECKING = False  # not typing's: `govcon gate` (console/gate_cli.py) imports this module on its hot path
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

INGEST_BATCH_LINES = 20_000
INGEST_BATCH_BYTES = 4 * 1024 * 1024  # JSON-escaped, it stays under the HTTP API's 10 MiB body
CONNECT_TIMEOUT_S = 5.0
#: how long a client waits for the service to answer a call that must never hang: ``hello`` (every command's
#: first call), a gate decision and the kill switch. A service that is stopped, deadlocked or swapping still
#: accepts connections (the kernel queues them), so without a deadline these calls waited forever: an agent's
#: `govcon gate` never exited, and neither did an incident commander's `govcon kill-switch engage`. The
#: service's own worst case is SQLite's busy budget (storage/db.py BUSY_TIMEOUT_MS, 10 s), so the default
#: leaves it room; ``$GOVCON_SERVICE_TIMEOUT`` sets it (seconds, 0.5-300). Other calls (a backtest, a
#: backup, a prune) take as long as they take.
SERVICE_TIMEOUT_ENV = "GOVCON_SERVICE_TIMEOUT"
HTTP_READ_TIMEOUT_S = 300.0  # the other calls over HTTP(S): between two reads of the answer
SERVICE_TIMEOUT_DEFAULT_S = 12.0
SERVICE_TIMEOUT_RANGE = (0.5, 300.0)
DEADLINE_METHODS = frozenset({"hello", "gate.decide", "overrides.kill_switch", "kill_marker.engaged"})


def service_timeout(env: dict[str, str] | None = None) -> float:
    """``$GOVCON_SERVICE_TIMEOUT`` or the default; a value that is not a number in range is refused by name."""
    raw = (os.environ if env is None else env).get(SERVICE_TIMEOUT_ENV, "").strip()
    if not raw:
        return SERVICE_TIMEOUT_DEFAULT_S
    low, high = SERVICE_TIMEOUT_RANGE
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # NaN fails too
        raise GovconError(f"${SERVICE_TIMEOUT_ENV} = {raw[:40]!r}: expected a number of seconds from {low:g} to "
                          f"{high:g}")
    return value


class ServiceUnavailable(GovconError):
    """The govcon service cannot be reached (exit 1); a gate ask then fails closed."""


def _error_classes() -> dict[str, type[BaseException]]:
    from engine import errors
    classes: dict[str, type[BaseException]] = {
        name: cls for name, cls in vars(errors).items() if isinstance(cls, type) and issubclass(cls, Exception)}
    from storage.db import StoreUnavailable
    classes["StoreUnavailable"] = StoreUnavailable
    classes["FileExistsError"] = FileExistsError
    from storage.maintenance import BackupNotSupported
    classes["BackupNotSupported"] = BackupNotSupported
    return classes


def _raise(err: dict[str, Any]) -> None:
    message = str(err.get("message", "the govcon service refused the call"))
    if err.get("type") == "ServiceBusy":  # refused for its connection limits: as unreachable (a gate denies,
        raise ServiceUnavailable(message)  # a kill switch engage falls back to the marker file)
    cls = _error_classes().get(err.get("type", ""), None)
    if cls is None or not issubclass(cls, Exception):
        exc: BaseException = GovconError(message)
        exc.exit_code = int(err.get("exitCode") or 1)  # type: ignore[attr-defined]
        raise exc
    try:
        exc = cls(message)
    except TypeError:
        exc = GovconError(message)
    raise exc


# --- transports -----------------------------------------------------------------------------------


class _UnixTransport:
    """A pool of connections to the socket: the console's worker threads call at the same time."""

    def __init__(self, url: str, path: str) -> None:
        self.url = url
        self.path = path
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            why = exc.strerror or str(exc)
            hint = ""
            if isinstance(exc, PermissionError):
                hint = " (operators need membership of the socket's group: ask the host's administrator)"
            elif isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
                hint = " (is `govcon serve --socket` running? systemctl status govcon)"
            raise ServiceUnavailable(f"cannot reach the govcon service at {self.url}: {why}{hint}") from None
        sock.settimeout(None)
        return sock

    @contextmanager
    def _connection(self, *, fresh: bool = False):
        """(a connection, whether it came from the pool)."""
        sock = None
        if not fresh:
            with self._lock:
                sock = self._idle.pop() if self._idle else None
        pooled = sock is not None
        if sock is None:
            sock = self._connect()
        try:
            yield sock, pooled
        except BaseException:
            sock.close()
            raise
        with self._lock:
            self._idle.append(sock)

    def request(self, doc: dict[str, Any], sink: Callable[[bytes], None] | None = None, *,
                timeout: float | None = None) -> dict[str, Any]:
        """Send ``doc`` and read its answer. With ``timeout``, a service that does not answer within it raises
        ServiceUnavailable, and that connection is closed (its late answer must not be read as the next call's)."""
        frame = dumps(doc)
        for attempt in (1, 2):  # a pooled connection the service closed meanwhile: once more on a new one
            pooled = False
            try:
                # the retry opens a new connection: another pooled one may have been closed as idle too (the
                # service closes a user's idle connections beyond the few it keeps, console/rpc_server.py)
                with self._connection(fresh=attempt == 2) as (sock, pooled):
                    sock.settimeout(timeout)
                    sock.sendall(frame)
                    reader = sock.makefile("rb")
                    try:
                        answer = read_frame(reader)
                        if answer is None:
                            raise ConnectionResetError("the service closed the connection")
                        size = answer.get("bin")
                        if size:
                            _copy_exact(reader, size, sink)
                    finally:
                        reader.close()
                    sock.settimeout(None)
                    return answer
            except ServiceUnavailable:
                raise
            except TimeoutError:  # not retried: the service may still be working on it
                raise ServiceUnavailable(f"the govcon service at {self.url} did not answer within {timeout:g} s "
                                         "(stopped, hung or overloaded?)") from None
            except (OSError, ProtocolError) as exc:
                if not pooled:  # a new connection failed: the service is the trouble, not a stale socket
                    raise ServiceUnavailable(f"the govcon service at {self.url} dropped the call: {exc}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for sock in self._idle:
                sock.close()
            self._idle.clear()


def _copy_exact(reader, size: int, sink: Callable[[bytes], None] | None) -> None:
    left = size
    while left:
        chunk = reader.read(min(left, 1 << 20))
        if not chunk:
            raise ProtocolError("the connection ended inside a transfer")
        left -= len(chunk)
        if sink is not None:
            sink(chunk)


class _HttpTransport:
    """``POST /api/rpc`` with the bearer token (``GOVCON_TOKEN``): the token's operator is the caller."""

    def __init__(self, url: str, token: str | None) -> None:
        if not token:
            raise GovconError(f"GOVCON_SERVER={url} needs a token: set GOVCON_TOKEN (an admin creates one with "
                              "`govcon tokens create USER`)")
        import httpx
        self.url = url
        self._client = httpx.Client(base_url=url.rstrip("/"),
                                    timeout=httpx.Timeout(HTTP_READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                                    headers={"Authorization": f"Bearer {token}"})

    def request(self, doc: dict[str, Any], sink: Callable[[bytes], None] | None = None, *,
                timeout: float | None = None) -> dict[str, Any]:
        import httpx
        body = dumps(doc)[4:]
        wait = HTTP_READ_TIMEOUT_S if timeout is None else timeout
        limits = httpx.Timeout(wait, connect=CONNECT_TIMEOUT_S)
        try:
            with self._client.stream("POST", "/api/rpc", content=body, timeout=limits,
                                     headers={"Content-Type": "application/json"}) as resp:
                if resp.status_code != 200:
                    resp.read()
                    try:
                        detail = resp.json().get("detail")
                    except ValueError:
                        detail = resp.text[:300]
                    if resp.status_code == 401:
                        raise GovconError(f"the govcon service at {self.url} refused the token: {detail}")
                    raise ServiceUnavailable(f"the govcon service at {self.url} answered {resp.status_code}: {detail}")
                stream = resp.iter_bytes()
                head = bytearray()
                answer = None
                for chunk in stream:
                    if answer is None:
                        head += chunk
                        if len(head) < 4:
                            continue
                        n = int.from_bytes(head[:4], "big")
                        if len(head) < 4 + n:
                            continue
                        import json
                        answer = json.loads(bytes(head[4:4 + n]))
                        rest = bytes(head[4 + n:])
                        if rest and sink is not None:
                            sink(rest)
                    elif sink is not None:
                        sink(chunk)
                if answer is None:
                    raise ProtocolError("the service's answer was cut short")
                return answer
        except httpx.ReadTimeout:
            raise ServiceUnavailable(f"the govcon service at {self.url} did not answer within {wait:g} s "
                                     "(stopped, hung or overloaded?)") from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"cannot reach the govcon service at {self.url}: {exc}") from None

    def close(self) -> None:
        self._client.close()


def transport_for(url: str, token: str | None = None):
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path:
            raise GovconError(f"GOVCON_SERVER={url}: name the socket, e.g. unix:///run/govcon/govcon.sock")
        return _UnixTransport(url, path)
    if parts.scheme in ("https", "http"):
        return _HttpTransport(url, token)
    raise GovconError(f"GOVCON_SERVER={url}: use unix:///PATH/TO/govcon.sock or https://HOST:4007")


# --- the remote facade ----------------------------------------------------------------------------


class _Part:
    """``gov.rules``, ``gov.overrides`` …: attribute access names the method, the call goes to the service."""

    def __init__(self, gov: RemoteGovernance, name: str) -> None:
        self._gov = gov
        self._name = name

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        path = f"{self._name}.{method}"
        return lambda *args, **kwargs: self._gov.call(path, *args, **kwargs)


class _RemoteGate(_Part):
    def decide(self, command_type: str, **kwargs: Any):
        """Fails closed like the embedded gate: a service that cannot be reached allows nothing."""
        try:
            return self._gov.call("gate.decide", command_type, **kwargs)
        except ServiceUnavailable as exc:
            from engine.gate import DENY, GateDecision
            return GateDecision(DENY, f"govcon service unreachable, failing closed: {exc}", command_type, None)


class _RemoteOverrides(_Part):
    def kill_switch(self, action: str, actor: str, reason: str | None):
        """Engaging must work when the service does not answer: then by the service's marker file, when this
        client knows where it is (``kill_switch_marker``; see ``engage_without_service``)."""
        try:
            return self._gov.call("overrides.kill_switch", action, actor, reason)
        except ServiceUnavailable as exc:
            if action != "engage":
                raise
            return engage_without_service(self._gov.kill_marker_path, actor, reason, exc, self._gov.clock)


def engage_without_service(marker_path: str | os.PathLike | None, actor: str, reason: str | None,
                           cause: ServiceUnavailable, clock=None):
    """The kill switch engaged by the service's marker file, the service being unreachable or hung: a file
    whose presence makes every one of the service's gate answers deny, checked before its store
    (engine/kill_marker.py). The client knows the path only from its own config (``kill_switch_marker`` or
    ``$GOVCON_KILL_SWITCH_MARKER``, set to the service's marker on the service's host); without it the
    engage fails plainly — never a marker the service does not read. The marker directory's permissions
    decide who may engage (as when the service cannot read its store); the service records the engagement
    in the store and alerts once it runs again (engine/overrides.py)."""
    from engine.clock import SystemClock
    from engine.kill_marker import KillMarker
    from engine.overrides import engage_by_marker, require_reason
    from storage.db import StoreUnavailable
    reason = require_reason(reason, "engaging the kill switch")
    if marker_path is None:
        why = str(cause).splitlines()[0]
        raise ServiceUnavailable(f"{why}: the kill switch is NOT engaged. This client knows no marker file to fall "
                                 "back on: set kill_switch_marker (or $GOVCON_KILL_SWITCH_MARKER) to the service's "
                                 "marker file, on the service's host (docs/runbook.md, \"The kill switch\")")
    try:
        return engage_by_marker(KillMarker(marker_path), actor, reason, (clock or SystemClock()).now(), cause,
                                unavailable="the govcon service did not answer")
    except StoreUnavailable as exc:  # the marker could not be made either: the client's error class, same words
        raise ServiceUnavailable(str(exc)) from None


class _RemoteIngestor:
    def __init__(self, gov: RemoteGovernance) -> None:
        self._gov = gov

    def ingest_lines(self, lines: Iterable[str | bytes], *, progress: Callable[[int], None] | None = None):
        """Read here (the client's rights), store there, in batches; one report, line numbers as in the file."""
        from engine.ingest import MAX_LINE_BYTES, IngestReport, Overlong, capped_lines
        if hasattr(lines, "readline"):  # a file: its lines capped, an overlong one as Overlong
            lines = capped_lines(lines, MAX_LINE_BYTES)  # type: ignore[arg-type, assignment]
        report = IngestReport()
        batch: list[Any] = []
        size, first = 0, 1

        def send() -> None:
            nonlocal batch, size, first
            part = self._gov.call("ingest_lines", batch, first)
            report.merge(part)
            first += len(batch)
            batch, size = [], 0

        for line in lines:
            if type(line) is Overlong:
                batch.append({"overlong": line.size})
                length = line.size
            else:
                if isinstance(line, bytes):
                    try:
                        line = line.decode()
                    except UnicodeDecodeError:
                        pass  # sent as bytes: the service rejects it as the embedded ingest does
                batch.append(line)
                length = len(line)
            if progress is not None:
                progress(length)
            size += len(batch[-1]) if not isinstance(batch[-1], dict) else 0
            if len(batch) >= INGEST_BATCH_LINES or size >= INGEST_BATCH_BYTES:
                send()
        if batch:
            send()
        report.errors.sort(key=lambda e: e.line)
        return report

    def ingest_objects(self, objects: Iterable[Any]):
        return self._gov.call("ingest_objects", list(objects))


class _RemoteStore:
    """What the client shows instead of the store's URL; there is no store to open here."""

    def __init__(self, url: str) -> None:
        self.display_url = url

    def _refuse(self, *args: Any, **kwargs: Any):
        raise GovconError("this command needs the store itself, and this process is a client of "
                          f"{self.display_url}: run it on the server's host as the service's user")

    read = write = _refuse

    def dispose(self) -> None:
        pass


class _RemoteMarker:
    def __init__(self, gov: RemoteGovernance) -> None:
        self._gov = gov

    def engaged(self):
        return self._gov.call("kill_marker.engaged")


class _RemoteNotifier:
    def __init__(self, gov: RemoteGovernance) -> None:
        self._gov = gov

    @property
    def sinks(self) -> list[Any]:
        from types import SimpleNamespace
        return [SimpleNamespace(name=n) for n in self._gov.call("sink_names")]


_PARTS = ("metrics", "readiness", "rules", "backtester", "policies", "modes", "actions", "calibration", "agents",
          "tokens", "outbox", "proposals", "cycle", "reports", "breakers",
          "drilldown", "explainer", "policy_book", "sink_book")


class RemoteGovernance:
    """The Governance facade's shape over the service (see the module's docstring)."""

    remote = True

    def __init__(self, url: str, token: str | None = None, *, clock=None,
                 kill_marker: str | os.PathLike | None = None, timeout: float | None = None) -> None:
        from engine.clock import SystemClock
        self.url = url
        self.transport = transport_for(url, token)
        self.timeout = service_timeout() if timeout is None else timeout  # for DEADLINE_METHODS
        self.kill_marker_path = kill_marker  # the service's marker file, when this client's config names it
        self.clock = clock or SystemClock()  # for showing times only: every decision is the service's
        self.store = _RemoteStore(url)
        self.kill_marker = _RemoteMarker(self)
        self.notifier = _RemoteNotifier(self)
        self.ingestor = _RemoteIngestor(self)
        self.gate = _RemoteGate(self, "gate")
        self.overrides = _RemoteOverrides(self, "overrides")
        for name in _PARTS:
            setattr(self, name, _Part(self, name))

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._call(method, args, kwargs)

    def _call(self, method: str, args: tuple, kwargs: dict[str, Any], sink=None) -> Any:
        timeout = self.timeout if method in DEADLINE_METHODS else None
        answer = self.transport.request({"m": method, "a": encode(list(args)), "k": encode(kwargs)}, sink,
                                        timeout=timeout)
        if "e" in answer:
            _raise(answer["e"])
        return decode(answer.get("r"), allow_classes=True)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def hello(self) -> dict[str, Any]:
        """Who the service says we are (connects now: an unreachable service is one clear error here)."""
        return self.call("hello")

    def backup(self, target: Path, *, compress: bool = False) -> int:
        """The service's consistent copy, written to ``target`` by this process (never by the service);
        gzip-compressed here with ``compress``."""
        target = target.expanduser().absolute()
        if target.exists():
            raise FileExistsError(f"{target} exists already: choose a new file name for the backup")
        partial = target.with_name(target.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                if compress:
                    import gzip
                    with gzip.GzipFile(fileobj=out, mode="wb") as packed:
                        self._call("backup", (), {}, sink=packed.write)
                else:
                    self._call("backup", (), {}, sink=out.write)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target.stat().st_size

    def audit_head(self) -> tuple[int, str]:
        seq, digest = self.call("audit_head")
        return seq, digest

    def audit_verify_report(self, expect_head: str | None):
        doc = self.call("audit_check", expect_head)
        return doc["report"], doc["keyed"]

    def console_read(self, what: str):
        """The console's periodic reads, made by the service as one call each (screens/data.py)."""
        return self.call("console_" + what)

    def close(self) -> None:
        self.transport.close()


class RemoteRunPort:
    """`govcon run` in client mode: the steps run here, as this OS user; the gate, the outcome, the
    kill switch check and the escalation go to the service (engine/runner.py's port, as the caller)."""

    def __init__(self, gov: RemoteGovernance) -> None:
        self.gov = gov

    def _call(self, method: str, *args: Any, plan=None, **kwargs: Any) -> Any:
        if plan is not None:
            import dataclasses
            kwargs["plan"] = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
        return self.gov.call("run_port", method, *args, **kwargs)

    def now(self) -> str:
        return self._call("now")

    def require_reporter(self) -> None:
        self._call("require_reporter")

    def rollback_mandatory(self, command_type: str, action_class: str | None) -> bool:
        return self._call("rollback_mandatory", command_type, action_class)

    def decide(self, plan, *, request: bool, take_grant: bool) -> dict[str, Any]:
        return self._call("decide", plan=plan, request=request, take_grant=take_grant)

    def wait(self, request_id: str, timeout: float) -> dict[str, Any]:
        return self._call("wait", request_id, timeout)

    def stop_reason(self) -> str | None:
        return self._call("stop_reason")

    def report_outcome(self, grant_id: str, plan, status: str) -> None:
        self._call("report_outcome", grant_id, status, plan=plan)

    def release(self, grant_id: str, reason: str) -> None:
        self._call("release", grant_id, reason)

    def escalate(self, grant_id: str, plan, title: str, body: str, details: dict[str, Any]) -> None:
        self._call("escalate", grant_id, title, body, details, plan=plan)

    def attach_report(self, grant_id: str, report: dict[str, Any]) -> None:
        self._call("attach_report", grant_id, report)


def connect(url: str, clock=None, *, kill_marker: str | os.PathLike | None = None) -> tuple[RemoteGovernance, str]:
    """The remote facade, connected; and the operator the service identified this process as."""
    gov = RemoteGovernance(url, os.environ.get("GOVCON_TOKEN") or None, clock=clock, kill_marker=kill_marker)
    try:
        who = gov.hello()
    except BaseException:
        gov.close()
        raise
    return gov, who["operator"]
