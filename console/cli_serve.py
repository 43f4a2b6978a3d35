"""`govcon serve` and `govcon tokens` (registered into the main parser by console/cli.py).

Heavy imports are deferred to cmd_serve: uvicorn, FastAPI (console.api), APScheduler (engine.jobs) and the
RPC server only for `govcon serve`, never for the other commands, which all import this module."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import logging.handlers
import os
import signal
import socket
import sys
from pathlib import Path

from console.log_format import FORMATS, reopener, setup_logging
from console.render import clean
from engine.clock import isoformat
from engine.errors import InvalidInput, NotInitialised


def register(command) -> None:
    """``command(name, handler, help, json_flag=True)`` adds a subcommand and returns its parser."""
    sp = command("serve", cmd_serve, "the HTTP API: the runbook's endpoints, ingest, the gate, /health, /metrics",
                 json_flag=False)
    sp.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; any other address makes reads need a token too)")
    sp.add_argument("--port", type=int, default=4007)
    sp.add_argument("--log-file", default=None,
                    help="log here instead of stderr; reopened on SIGUSR1 or when moved (log rotation)")
    sp.add_argument("--log-format", choices=FORMATS, default="text",
                    help="text lines (default) or json: one object per line (time, level, logger, message, fields)")
    sp.add_argument("--pid-file", default=None, help="write the server's process id here (for kill -USR1)")
    sp.add_argument("--max-body-mib", type=float, default=None,
                    help="largest POST /api/events body in MiB (default 10, or [serve] max_body_mib)")
    sp.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")
    sp.add_argument("--socket", default=None, metavar="PATH",
                    help="also listen on this Unix socket (e.g. /run/govcon/govcon.sock): each caller is the OS "
                         "user the kernel reports for the connection; clients set GOVCON_SERVER=unix://PATH")
    sp.add_argument("--socket-mode", default="0660", type=_octal_mode, metavar="MODE",
                    help="the socket's permissions (default 0660: the service's user and the socket's group)")
    sp.add_argument("--socket-group", default=None, metavar="GROUP",
                    help="the socket's group: the operators' group (default: the service's own group)")

    sp = command("tokens", cmd_tokens, "bearer tokens for the HTTP API: create, list, revoke", json_flag=False)
    tsub = sp.add_subparsers(dest="tokens_command", metavar="create|list|revoke", required=True)
    tc = tsub.add_parser("create", help="create a token for USER; prints it once, alone on stdout")
    tc.add_argument("user")
    from console.cli import _duration  # deferred: import cycle with console.cli, which registers these commands
    tc.add_argument("--expires-in", type=_duration, default=None, metavar="DURATION",
                    help="the token stops working this long from now (e.g. 30d, 12h); default: never")
    tc.add_argument("--agent", default=None, metavar="NAME",
                    help="bind the token to this agent: its heartbeats renew NAME's lease and no other")
    tc.add_argument("--json", action="store_true", help="print {id, operator, token, expiresAt, agent}")
    tl = tsub.add_parser("list", help="every token: id, operator, created, expiry, agent, revoked (never the secret)")
    tl.add_argument("--json", action="store_true")
    tr = tsub.add_parser("revoke", help="revoke a token by its id (it stops working within seconds)")
    tr.add_argument("id")
    tr.add_argument("--json", action="store_true")


def _octal_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode such as 0660") from None
    if mode & ~0o777 or mode & 0o007:
        raise argparse.ArgumentTypeError(f"{text}: the socket must not be open to every user (no o+rwx bits)")
    return mode


# --- tokens ------------------------------------------------------------------------------------


def cmd_tokens(ctx) -> int:
    book = ctx.gov.tokens
    sub = ctx.args.tokens_command
    if sub == "create":
        new = book.create(ctx.operator, ctx.args.user, expires_in=ctx.args.expires_in, agent=ctx.args.agent)
        if ctx.args.json:
            ctx.emit_json(new.to_json())
        else:
            print(new.secret, file=ctx.out)
            bound = f", bound to agent {new.agent}" if new.agent else ""
            until = f", expires {isoformat(new.expires_at)}" if new.expires_at else ""
            print(f"token {new.id} for {new.operator}{bound}{until}: shown this once, store it now "
                  f"(revoke with `govcon tokens revoke {new.id}`)", file=ctx.err)
        return 0
    if sub == "revoke":
        doc = book.revoke(ctx.operator, ctx.args.id)
        ctx.emit_json(doc) if ctx.args.json else print(f"revoked {doc['id']} ({doc['operator']})", file=ctx.out)
        return 0
    docs = book.list()
    if ctx.args.json:
        ctx.emit_json(docs)
        return 0
    if not docs:
        print("no tokens; create one with `govcon tokens create USER`", file=ctx.out)
    for d in docs:
        if d["revokedAt"]:
            state = f"revoked {d['revokedAt']}"
        elif d["expired"]:
            state = f"EXPIRED {d['expiresAt']}"
        else:
            state = f"active until {d['expiresAt']}" if d["expiresAt"] else "active, no expiry"
        used = f"last used {d['lastUsedAt']}" if d["lastUsedAt"] else "never used"
        agent = f" agent {d['agent']}," if d["agent"] else ""
        print(clean(f"{d['id']:<18} {d['operator']:<20} created {d['createdAt']} by {d['createdBy']:<12}{agent} "
                    f"{state}, {used}"), file=ctx.out)
    return 0


# --- serve -------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so treat it as reachable from outside


def _max_body(ctx) -> int:
    mib = ctx.args.max_body_mib
    if mib is None:
        mib = float(ctx.config.section("serve").get("max_body_mib", 10))
    if mib <= 0:
        raise InvalidInput(f"--max-body-mib (or [serve] max_body_mib) must be positive, not {mib}")
    return int(mib * 1024 * 1024)


SWITCH_INTERVAL_S = 0.0005
DEFAULT_READ_RATE = 50.0   # reads without a token, per second and client address
DEFAULT_READ_BURST = 100


def _read_limits(ctx) -> tuple[float | None, int, frozenset[str]]:
    """[serve] read_rate (0 turns the limit off), read_burst, allowed_hosts (Host names a loopback bind
    answers besides localhost, 127.0.0.1 and [::1])."""
    section = ctx.config.section("serve")
    where = f"[serve] in {ctx.config.path}"
    rate = section.get("read_rate", DEFAULT_READ_RATE)
    burst = section.get("read_burst", DEFAULT_READ_BURST)
    hosts = section.get("allowed_hosts", [])
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
        raise InvalidInput(f"{where}: read_rate must be a number of reads a second (0: no limit), not {rate!r}")
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1_000_000:
        raise InvalidInput(f"{where}: read_burst must be a whole number from 1 to 1000000, not {burst!r}")
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip() for h in hosts):
        raise InvalidInput(f"{where}: allowed_hosts must be a list of host names, not {hosts!r}")
    return (float(rate) or None), burst, frozenset(h.strip() for h in hosts)


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here rather than by uvicorn: uvicorn binds after the app's startup
    (scheduler, lease, metrics job) has run, so a busy port showed a scheduler traceback first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def cmd_serve(ctx) -> int:
    import uvicorn

    from console.api import create_app
    from console.api_integrations import mapping_from_config
    from engine.jobs import GovconScheduler, default_holder

    a = ctx.args
    # the event loop thread holds the GIL while it parses requests; the safety threads (gate, kill switch)
    # wait for it at every store round trip, by default up to 5 ms each: under a flood of reads that made a
    # gate answer take 20-60 ms. A 0.5 ms switch interval bounds the wait, for a few per cent of throughput.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    handler = setup_logging(a.log_file, a.log_format)
    gov = ctx.gov
    if not gov.is_initialised():
        raise NotInitialised()
    require_reads = not is_loopback(a.host)
    scheduler = GovconScheduler(gov, default_holder("serve", ctx.operator), **ctx.config.scheduler_options())
    rate, burst, hosts = _read_limits(ctx)
    app = create_app(gov, require_auth_for_reads=require_reads, scheduler=scheduler, max_body_bytes=_max_body(ctx),
                     on_sigusr1=reopener(handler), read_rate=rate, read_burst=burst,
                     allowed_hosts=hosts if not require_reads else None,
                     alertmanager=mapping_from_config(ctx.config))
    try:  # before anything starts: a busy port is one clear line, not a scheduler started and torn down
        sock = bind_socket(a.host, a.port)
    except OSError as exc:
        print(f"govcon: cannot listen on {a.host}:{a.port}: {exc.strerror or exc} (another govcon serve, or "
              f"another program, holds the port? `ss -ltnp | grep :{a.port}`; or choose one with --port)",
              file=ctx.err)
        return 1
    log = logging.getLogger("govcon.serve")
    listener = None
    if a.socket:
        from console.rpc_server import RpcService, SocketListener
        try:
            listener = SocketListener(RpcService(gov, address=f"unix://{Path(a.socket).absolute()}"),
                                      Path(a.socket), mode=a.socket_mode, group=a.socket_group)
        except OSError as exc:
            sock.close()
            print(f"govcon: cannot listen on the socket {a.socket}: {exc.strerror or exc}", file=ctx.err)
            return 1
        except InvalidInput:
            sock.close()
            raise
        listener.start()
        log.info("govcon serve on unix://%s: callers identified by their OS user (SO_PEERCRED)", a.socket)
    log.info("govcon serve on http://%s:%d, store %s; reads %s; changes need a token",
             a.host, a.port, gov.store.display_url, "need a token" if require_reads else "open (loopback)")
    pid_file = Path(a.pid_file) if a.pid_file else None
    if pid_file:
        pid_file.write_text(f"{os.getpid()}\n")
    config = uvicorn.Config(app, host=a.host, port=a.port, log_config=None, access_log=a.access_log,
                            lifespan="on", server_header=False, backlog=2048, timeout_keep_alive=30)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it with the handler it found: this one, so
    # that a clean shutdown exits 0 and the pid file is removed
    signal.signal(signal.SIGTERM, lambda *_: None)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits when it cannot bind or start; it has logged why
        pass
    finally:
        if listener is not None:
            listener.stop()
        if pid_file:
            pid_file.unlink(missing_ok=True)
    if not server.started:
        print(f"govcon: the server did not start on {a.host}:{a.port} (port in use, or no such address?); "
              f"see {a.log_file or 'the log above'}", file=ctx.err)
        return 1
    return 0
