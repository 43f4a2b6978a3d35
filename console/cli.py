"""`govcon …`: the command line for scripts and runbooks (DESIGN.md, "Command line").

Three imports are deferred to the commands that need them, so that `govcon status` and `govcon gate` do not
load what they never use (tests/unit/test_lean_imports.py): engine.ingest (orjson) for `ingest`,
console.cli_audit (the audit key's secrets) for `audit verify|head|key` and `db init`, engine.jobs
(APScheduler) for `scheduler`. The console's own frameworks are deferred inside console/app.py, the
service's inside console/cli_serve.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy.engine import make_url

from console import cli_actions, cli_agents, cli_drilldown, cli_policies, cli_run, cli_serve, startup
from console.app import run_console
from console.client import ServiceUnavailable, connect, engage_without_service
from console.config import Config, ConfigError, build_governance, load_config
from console.demo import run_demo
from console.identity import current_operator
from console.log_format import setup_logging as log_to
from console.render import (
    CleanFormatter,
    CleanStream,
    print_alerts,
    print_audit,
    print_backtest,
    print_events,
    print_ingest,
    print_metrics,
    print_proposals,
    print_readiness,
    print_roles,
    print_rules,
    print_status,
)
from engine.clock import Clock, SystemClock
from engine.errors import GovconError, InvalidInput, NotInitialised, PermissionDenied
from engine.governance import Governance
from engine.outbox import STATUSES as ALERT_STATUSES
from engine.outbox import statuses_for
from engine.redact import RedactingFilter
from engine.report_markdown import render as report_markdown
from engine.rule_language import RuleError, parse_window
from engine.rules import validate_rule
from storage import maintenance
from storage.db import StoreUnavailable, normalise_url
from storage.maintenance import BackupNotSupported
from storage.store import Store

PROGRESS_MIN_BYTES = 4 * 1024 * 1024
#: commands that do not first compare the config file's [policies]/[alerts] with the store's (the others warn)
QUIET_COMMANDS = frozenset({"kill-switch", "revert", "gate", "run", "ingest", "db"})


class Context:
    """What a command needs, built lazily: the config, the store, the governance facade, the operator."""

    def __init__(self, args: argparse.Namespace, clock: Clock, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.clock = clock
        self.out = out
        self.err = err
        self._gov: Governance | None = None
        self._config: Config | None = None
        self.operator = current_operator()

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config()
        return self._config

    @property
    def server(self) -> str | None:
        """The govcon service this command is a client of (console/client.py), or None: embedded."""
        if self.args.command in EMBEDDED_ONLY or getattr(self.args, "database_url", None):
            return None
        return self.config.server()

    @property
    def gov(self) -> Governance:
        if self._gov is None and self.server is not None:
            remote, self.operator = connect(self.server, self.clock, kill_marker=self.config.kill_switch_marker())
            # RemoteGovernance has the facade's shape over the service (console/client.py), duck-typed: the
            # commands' code is the same in both modes
            self._gov = cast(Governance, remote)
        if self._gov is None:
            url = getattr(self.args, "database_url", None) or self.config.database_url
            creating = (self.args.command, getattr(self.args, "db_command", None)) == ("db", "init")
            if not creating:
                refuse_missing_sqlite_store(url)
            else:
                create_private_sqlite_file(url)
            quiet = self.args.command in QUIET_COMMANDS  # safety and hot paths: no config comparison first
            self._gov = build_governance(Store(url), self.config, self.clock, warn_drift=not quiet)
        return self._gov

    def close(self) -> None:
        if self._gov is not None:
            self._gov.close()

    def emit_json(self, doc: Any) -> None:
        json.dump(doc, self.out, indent=2, sort_keys=False, default=str)
        self.out.write("\n")


#: commands that always open the store themselves: the service, and the demo's scratch store
EMBEDDED_ONLY = ("serve", "demo")
#: (command, subcommand) that act on the store's files or run its jobs: on the server's host only
SERVER_HOST_ONLY = {("db", "init"): "creates a store", ("db", "migrate"): "upgrades the store's schema",
                    ("scheduler", None): "runs the store's scheduled jobs (the service runs them already)",
                    ("audit", "key"): "manages the audit key the service holds",
                    ("db", "import-config"): "imports the service's config file into the store"}


def refuse_server_host_only(ctx: Context) -> None:
    a = ctx.args
    sub = getattr(a, "db_command", None) or (getattr(a, "audit_command", None) if a.command == "audit" else None)
    what = SERVER_HOST_ONLY.get((a.command, sub if (a.command, sub) in SERVER_HOST_ONLY else None))
    if what is None or ctx.server is None:
        return
    name = " ".join(x for x in (a.command, sub) if x)
    raise InvalidInput(f"`govcon {name}` {what}: run it on the server's host as the service's user, with "
                       f"the store's URL and without GOVCON_SERVER (this shell is a client of {ctx.server})")


def create_private_sqlite_file(url: str) -> None:
    """`db init` creates a SQLite store readable and writable by its owner only (0600, whatever the umask):
    on a shared host the service's user owns it and everyone else goes through the service. SQLite gives
    the -wal and -shm files the same mode."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if path.exists() or not path.parent.is_dir():
        return  # an existing store (init refuses it) or a missing directory (the store names it)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def refuse_missing_sqlite_store(url: str) -> None:
    """Only `db init` creates a store: a mistyped path must not quietly start a second, empty one."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).exists():
        raise NotInitialised(f"there is no store at {parsed.database}: check GOVCON_DATABASE_URL "
                             "(or database_url in the config file), or create one with `govcon db init`")


def _duration(text: str) -> timedelta:
    try:
        return parse_window(text)
    except RuleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str, upper: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    shown = text if len(text) < 40 else text[:40] + "…"
    where = "" if upper is None else f"; the range is 1..{upper:,}"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {shown}{where}")
    if upper is not None and value > upper:
        raise argparse.ArgumentTypeError(f"must be at most {upper:,}, not {shown}{where}")
    return value


MAX_LIMIT = 100_000  # the most rows a --limit lists (more is a mistake, and some stores overflow)


def _limit(text: str) -> int:
    """``--limit``: 1..MAX_LIMIT (argparse names the flag: "argument --limit: must be at most 100,000, not …")."""
    return _positive_int(text, MAX_LIMIT)


def _date(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (use YYYY-MM-DD or an ISO 8601 time)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# --- command handlers ------------------------------------------------------------------------


def _backup(ctx: Context, target: Path) -> int:
    """`db backup PATH`: a missing directory, a directory as PATH or a place that cannot be written is a
    one-line error naming the path (exit 1), never a traceback; nothing is left behind."""
    shown = str(target)
    if target.is_dir():
        raise GovconError(f"cannot back up to {shown}: it is a directory; name a new file in it, "
                          f"e.g. {target / 'governance-backup.sqlite'}")
    parent = target.expanduser().absolute().parent
    if parent.exists() and not parent.is_dir():
        raise GovconError(f"cannot back up to {shown}: {parent} is not a directory")
    if not parent.is_dir():
        raise GovconError(f"cannot back up to {shown}: the directory {parent} does not exist (create it first)")
    try:
        return ctx.gov.backup(target, compress=ctx.args.compress or target.name.endswith(".gz"))
    except FileExistsError:
        raise
    except (OSError, sqlite3.Error) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        if not os.access(parent, os.W_OK | os.X_OK):
            why = f"the directory {parent} is not writable ({why})"
        raise GovconError(f"cannot back up to {shown}: {why}") from None


def cmd_status(ctx: Context) -> int:
    try:
        doc = ctx.gov.status()
    except StoreUnavailable:
        marker = ctx.gov.kill_marker.engaged()  # the one thing still known without the store
        if marker is not None:
            print(f"govcon: kill switch ENGAGED by marker file {marker.path}"
                  + (f" (by {marker.by}: {marker.reason})" if marker.by else ""), file=ctx.err)
        raise
    ctx.emit_json(doc) if ctx.args.json else print_status(doc, ctx.out)
    return 0


def cmd_ingest(ctx: Context) -> int:
    from engine.ingest import open_event_source, readable_source_size
    ctx.gov.require(ctx.operator, "ingest")
    source = ctx.args.file
    progress = None
    if source == "-":
        stream = sys.stdin.buffer
        readable_source_size(stream, "standard input")  # refuses e.g. `< /dev/zero`
    else:
        stream, size = open_event_source(source)  # a clear error for a directory, a device, no permission
        if ctx.out.isatty() and size is not None and size >= PROGRESS_MIN_BYTES and not ctx.args.json:
            progress = _ProgressBar(size, getattr(ctx.err, "stream", ctx.err))  # its own \r, not escaped
    try:
        report = ctx.gov.ingestor.ingest_lines(stream, progress=progress)
    except OSError as exc:  # e.g. an I/O error half-way: the batches committed before it stay stored
        name = "standard input" if source == "-" else source
        raise InvalidInput(f"{name}: reading failed: {exc.strerror or exc}; batches read before it were stored, "
                           "and ingesting the file again is safe (duplicates are skipped)") from None
    finally:
        if progress:
            progress.done()
        if stream is not sys.stdin.buffer:
            stream.close()
    if ctx.args.json:
        ctx.emit_json(report.to_json())
    else:
        conflicts = [e for e in report.errors if e.conflict]
        if conflicts:  # print_ingest says "rejected" for every error; a conflict is not one
            report = replace(report, errors=[e for e in report.errors if not e.conflict])
        print_ingest(report, ctx.out, ctx.err)
        for e in conflicts:
            ctx.err.write(f"conflict {e}\n")
        if report.conflict:
            ctx.out.write(f"conflict {report.conflict:,}: resends that differ from the stored event "
                          "(the stored event was kept)\n")
    return 1 if report.rejected or report.conflict else 0


class _ProgressBar:
    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.seen, self.stream, self.last = total, 0, stream, -1

    def __call__(self, n: int) -> None:
        self.seen += n
        pct = self.seen * 100 // self.total
        if pct != self.last:
            self.last = pct
            bar = "#" * (pct // 4)
            self.stream.write(f"\ringesting [{bar:<25}] {pct:3d}%")
            self.stream.flush()

    def done(self) -> None:
        self.stream.write("\r" + " " * 45 + "\r")
        self.stream.flush()


def cmd_metrics(ctx: Context) -> int:
    metrics = ctx.gov.metrics.collect_since(ctx.args.since)
    doc = metrics.to_json()
    ctx.emit_json(doc) if ctx.args.json else print_metrics(doc, ctx.out)
    return 0


def cmd_readiness(ctx: Context) -> int:
    if ctx.args.explain:
        return cli_drilldown.readiness_explained(ctx, print_readiness)
    report = ctx.gov.readiness.assess()
    doc = report.to_json()
    ctx.emit_json(doc) if ctx.args.json else print_readiness(doc, ctx.out)
    return 0


def cmd_attest(ctx: Context) -> int:
    valid_for = ctx.args.valid_for
    doc = ctx.gov.attest(ctx.operator, ctx.args.item, passed=ctx.args.passed, evidence=ctx.args.evidence,
                         valid_for=valid_for)
    if ctx.args.json:
        ctx.emit_json(doc)
    else:
        verdict = "passing" if doc["passed"] else "failing"
        print(f"attested {doc['item']!r} as {verdict} (valid until {doc['expiresAt']})", file=ctx.out)
    return 0


def cmd_audit(ctx: Context) -> int:
    if ctx.args.audit_command in ("verify", "head", "key"):
        from console.cli_audit import run_audit_command
        return run_audit_command(ctx)
    entries = ctx.gov.audit_entries(limit=ctx.args.limit, search=ctx.args.search)
    ctx.emit_json(entries) if ctx.args.json else print_audit(entries, ctx.out)
    return 0


def cmd_roles(ctx: Context) -> int:
    sub = ctx.args.roles_command
    if sub in (None, "list"):
        grants = ctx.gov.role_grants()
        ctx.emit_json(grants) if ctx.args.json else print_roles(grants, ctx.out)
        return 0
    if sub == "grant":
        changed = ctx.gov.grant_role(ctx.operator, ctx.args.user, ctx.args.role)
        msg = f"granted {ctx.args.role} to {ctx.args.user}" if changed else \
            f"{ctx.args.user} already holds {ctx.args.role}"
    else:
        changed = ctx.gov.revoke_role(ctx.operator, ctx.args.user, ctx.args.role)
        msg = f"revoked {ctx.args.role} from {ctx.args.user}" if changed else \
            f"{ctx.args.user} did not hold {ctx.args.role}"
    ctx.emit_json({"changed": changed, "user": ctx.args.user, "role": ctx.args.role}) if ctx.args.json \
        else print(msg, file=ctx.out)
    return 0


def cmd_db(ctx: Context) -> int:
    sub = ctx.args.db_command
    if sub == "init":
        from console.cli_audit import create_audit_key
        policies, source = ctx.config.seed_policies()  # validated before anything is written
        sinks = ctx.config.file_sinks() or []
        key_note = create_audit_key(ctx)  # before the first entry, so that the chain is keyed from entry 1
        ctx.gov.init_store(ctx.operator, phase_started=ctx.args.phase_started, policies=policies, sinks=sinks,
                           config_path=str(ctx.config.path or ""), policies_from=source)
        print(f"created the store {ctx.gov.store.display_url} at L3; {ctx.operator} is its first admin",
              file=ctx.out)
        print(f"policies: {len(policies)} from {source}; alert sinks: {len(sinks)}"
              + (f" from the config file {ctx.config.path}" if sinks else "")
              + ". They live in the store now: `govcon policies list`, `govcon alerts sinks list`", file=ctx.out)
        if key_note:
            print(key_note, file=ctx.out)
    elif sub == "migrate":
        url = getattr(ctx.args, "database_url", None) or ctx.config.database_url
        with Store(url, apply_migrations=False) as store:  # ctx.gov would migrate on open
            before, after = store.migrate()
        print(f"schema at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"),
              file=ctx.out)
    elif sub == "backup":
        size = _backup(ctx, Path(ctx.args.path))
        print(f"backed up {ctx.gov.store.display_url} to {ctx.args.path} ({size:,} bytes)", file=ctx.out)
        if ctx.args.keep is not None:
            try:
                gone = maintenance.retire_backups(Path(ctx.args.path), ctx.args.keep, time.time())
            except ValueError as exc:
                raise GovconError(str(exc)) from None
            print(f"removed {len(gone)} backup(s) older than {ctx.args.keep.days} days"
                  + "".join(f"\n  {p.name}" for p in gone), file=ctx.out)
    elif sub == "prune":
        removed = ctx.gov.prune(ctx.operator, ctx.args.older_than)
        if ctx.args.json:
            ctx.emit_json({"removed": removed})
        else:
            total = sum(removed.values())
            print(f"removed {total:,} rows older than {ctx.args.older_than.days} days:", file=ctx.out)
            for table, n in removed.items():
                print(f"  {table:<24} {n:>10,}", file=ctx.out)
            print("kept: unresolved breaker events, proposals, alerts not yet sent or dismissed, the audit log",
                  file=ctx.out)
    return 0


def cmd_events(ctx: Context) -> int:
    if ctx.args.events_command == "show":
        return cli_drilldown.show_event(ctx)
    if ctx.args.events_command == "resolve":
        doc = ctx.gov.breakers.resolve(ctx.operator, ctx.args.id, note=ctx.args.note,
                                       false_positive=ctx.args.false_positive)
        if ctx.args.json:
            ctx.emit_json(doc)
        else:
            fp = " as a false positive" if doc["falsePositive"] else ""
            print(f"resolved {doc['id']} ({doc['ruleName']}){fp}", file=ctx.out)
        return 0
    events = ctx.gov.breaker_events(unresolved_only=ctx.args.unresolved, limit=ctx.args.limit)
    ctx.emit_json(events) if ctx.args.json else print_events(events, ctx.out)
    return 0


def cmd_alerts(ctx: Context) -> int:
    a = ctx.args
    if a.alerts_command in ("retry", "dismiss"):
        book = ctx.gov.outbox
        doc = book.retry(ctx.operator, a.ids, all_dead=a.dead) if a.alerts_command == "retry" else \
            book.dismiss(ctx.operator, a.ids, all_dead=a.dead, reason=a.reason)
        if a.json:
            ctx.emit_json(doc)
            return 0
        done = "queued again" if a.alerts_command == "retry" else "dismissed"
        for d in doc["changed"]:
            print(f"alert {d['id']} to {d['sink']} {done} ({d['severity']} {d['kind']}: "
                  f"{d['title'] or d['dedupKey']})", file=ctx.out)
        for d in doc["superseded"]:
            print(f"alert {d['id']} to {d['sink']} left dead: its resolve was sent since, so the trigger would "
                  f"open an incident that is over (dismiss it)", file=ctx.out)
        if not doc["changed"] and not doc["superseded"]:
            print("no dead-lettered alerts", file=ctx.out)
        configured = {s.name for s in ctx.gov.notifier.sinks}
        if a.alerts_command == "retry":
            for sink in sorted({d["sink"] for d in doc["changed"]} - configured):
                print(f"govcon: warning: sink {sink!r} is not among the store's alert sinks: it will be "
                      f"dead-lettered again (`govcon alerts sinks list`)", file=ctx.err)
        return 0
    docs = ctx.gov.outbox.list(statuses=statuses_for(a.status), limit=a.limit)
    ctx.emit_json(docs) if a.json else print_alerts(docs, ctx.out)
    return 0



def _rule_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {"condition": args.condition, "window": args.window, "action": args.action,
               "alert_severity": args.severity, "min_samples": args.min_samples, "enabled": args.enabled,
               "shadow": args.shadow, "recovery": args.recovery, "cooldown": args.cooldown, "probes": args.probes}
    return {k: v for k, v in changes.items() if v is not None}


def cmd_rules(ctx: Context) -> int:
    a = ctx.args
    sub = a.rules_command or "list"
    if sub == "list":
        rules = ctx.gov.rules.list()
        ctx.emit_json(rules) if a.json else print_rules(rules, ctx.out)
        return 0
    if sub == "show":
        rule = ctx.gov.rules.show(a.name)
        ctx.emit_json(rule) if a.json else print_rules([rule], ctx.out, detail=True)
        return 0
    if sub == "add":
        rule = ctx.gov.rules.add(ctx.operator, {"name": a.name, **_rule_changes(a)})
        ctx.emit_json(rule) if a.json else print(f"added rule {rule['name']!r}", file=ctx.out)
        return 0
    if sub == "set":
        rule = ctx.gov.rules.set(ctx.operator, a.name, _rule_changes(a))
        ctx.emit_json(rule) if a.json else print_rules([rule], ctx.out, detail=True)
        return 0
    if sub == "mode":
        result = ctx.gov.overrides.set_breaker_mode(ctx.operator, a.mode, a.reason)
        ctx.emit_json(result.to_json()) if a.json else print(result.message, file=ctx.out)
        return 0
    # backtest
    if a.name:
        rule = ctx.gov.rules.show(a.name)
        condition, window, samples = rule["condition"], a.window or rule["window"], rule["minSamples"]
    elif a.condition:
        condition, window, samples = a.condition, a.window or "5m", a.min_samples or 10
    else:
        raise InvalidInput("backtest needs a rule NAME or --condition C [--window W]")
    validate_rule({"name": "backtest", "condition": condition, "window": window, "action": "alert_only",
                   "alert_severity": "low", "min_samples": samples})
    backtest = ctx.gov.backtester.run(condition, window, days=a.days, min_samples=samples)
    ctx.emit_json(backtest.to_json()) if a.json else print_backtest(backtest.to_json(), ctx.out)
    return 0


def cmd_revert(ctx: Context) -> int:
    result = ctx.gov.overrides.revert(ctx.operator, ctx.args.reason)
    ctx.emit_json(result.to_json()) if ctx.args.json else print(result.message, file=ctx.out)
    return 0


#: how long `kill-switch engage` waits for the store to open (migrations checked, config compared) before it
#: engages by the marker file instead: a healthy store opens in well under a second; a PostgreSQL table locked
#: by another session, or a server refusing connections, must not keep the switch from engaging
ENGAGE_OPEN_DEADLINE_S = 5.0


def cmd_kill_switch(ctx: Context) -> int:
    a = ctx.args
    client = ctx.server is not None  # a client's connect has its own deadline (console/client.py)
    try:
        gov = ctx.gov if a.action != "engage" or client else _open_within(ctx, ENGAGE_OPEN_DEADLINE_S)
    except ServiceUnavailable as exc:  # a client, and the service does not answer: engaging still works
        if a.action != "engage":
            raise
        result = engage_without_service(ctx.config.kill_switch_marker(), ctx.operator, a.reason, exc, ctx.clock)
    except (ConfigError, InvalidInput, PermissionDenied):
        raise
    except Exception as exc:  # embedded, and the store cannot be opened (refused, locked, corrupt, gone)
        if a.action != "engage" or client:  # a client never guesses a marker path from its own store URL
            raise
        result = _engage_without_store(ctx, exc)
    else:
        result = gov.overrides.kill_switch(a.action, ctx.operator, a.reason)  # the marker file when needed
    ctx.emit_json(result.to_json()) if a.json else print(result.message, file=ctx.out)
    return 1 if result.failed else 0


def _open_within(ctx: Context, seconds: float) -> Governance:
    """``ctx.gov``, opened in a daemon thread and waited for at most ``seconds``; raises StoreUnavailable
    when it takes longer (the thread is left behind: the command ends soon after)."""
    import threading
    done: list[Any] = []

    def open_store() -> None:
        try:
            done.append(ctx.gov)
        except BaseException as exc:
            done.append(exc)
    opener = threading.Thread(target=open_store, name="govcon-open-store", daemon=True)
    opener.start()
    opener.join(seconds)
    if not done:
        raise StoreUnavailable(f"the store did not open within {seconds:g} s (locked or hung?)")
    if isinstance(done[0], BaseException):
        raise done[0]
    return cast(Governance, done[0])


def _engage_without_store(ctx: Context, cause: BaseException) -> Any:
    """The kill switch engaged by its marker file when the store cannot even be opened: where the config puts
    the marker, else where every govcon on this store looks for it (engine/kill_marker.py). Beside a SQLite
    store only when its directory exists (a mistyped path creates nothing)."""
    from engine.kill_marker import KillMarker, default_marker_path
    from engine.overrides import engage_by_marker, require_reason
    reason = require_reason(ctx.args.reason, "engaging the kill switch")
    path = ctx.config.kill_switch_marker()
    if path is None:
        url = make_url(normalise_url(getattr(ctx.args, "database_url", None) or ctx.config.database_url))
        path = default_marker_path(url.get_backend_name(), url.database)
        if url.get_backend_name() == "sqlite" and not path.parent.is_dir():
            raise StoreUnavailable(f"{cause}; and the marker file's directory {path.parent} does not exist: "
                                   "the kill switch is NOT engaged") from cause
    return engage_by_marker(KillMarker(path), ctx.operator, reason, ctx.clock.now(), cause,
                            unavailable="store cannot be opened")


def cmd_cycle(ctx: Context) -> int:
    report = ctx.gov.cycle.run(ctx.operator)
    if ctx.args.json:
        ctx.emit_json(report)
    else:
        print(report_markdown(report), file=ctx.out)
    return 0


def cmd_proposals(ctx: Context) -> int:
    a = ctx.args
    sub = a.proposals_command or "list"
    book = ctx.gov.proposals
    if sub == "list":
        docs = book.list(status=a.status)
        ctx.emit_json(docs) if a.json else print_proposals(docs, ctx.out)
        return 0
    if sub == "show":
        doc = book.show(a.id)
    elif sub == "approve":
        doc = book.approve(ctx.operator, a.id, a.role)
    elif sub == "extend":
        doc = book.extend(ctx.operator, a.id, a.days, a.reason)
    else:
        doc = book.reject(ctx.operator, a.id, a.reason)
    ctx.emit_json(doc) if a.json else print_proposals([doc], ctx.out, detail=True)
    return 0


def cmd_scheduler(ctx: Context) -> int:
    from engine.jobs import default_holder, run_headless
    if ctx.args.log_file or ctx.args.log_format != "text":
        log_to(ctx.args.log_file, ctx.args.log_format)
    gov = ctx.gov
    print(f"scheduler candidate {default_holder('scheduler', ctx.operator)} on {gov.store.display_url}",
          file=ctx.err)
    run_headless(gov, default_holder("scheduler", ctx.operator), stop_after=ctx.args.run_for,
                 **ctx.config.scheduler_options())
    return 0


def cmd_console(ctx: Context) -> int:
    return run_console(ctx.gov, operator=ctx.operator)


def cmd_demo(ctx: Context) -> int:
    return run_demo(operator=ctx.operator, path=ctx.args.path)


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="govcon", description="Govern autonomous operations: breakers, "
                                "readiness, proposals, kill switch.")
    p.add_argument("--database-url", help="override GOVCON_DATABASE_URL / the config file")
    p.set_defaults(handler=cmd_console, json=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Callable[[Context], int], help: str, *, json_flag: bool = True):
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(handler=handler)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print one JSON document")
        return sp

    command("status", cmd_status, "phase, whitelist, paused types, kill switch, unresolved events, readiness")
    sp = command("ingest", cmd_ingest, "store events from a JSON Lines file (or - for stdin)")
    sp.add_argument("file", metavar="FILE|-")
    sp = command("metrics", cmd_metrics, "AutonomyMetrics for the period ending now")
    sp.add_argument("--since", type=_duration, default=timedelta(days=7), help="e.g. 1h, 7d (default 7d)")
    sp = command("readiness", cmd_readiness, "the readiness report: checklists, score, blockers")
    sp.add_argument("--explain", action="store_true",
                    help="for each missing point: what would earn it and when, and the score if it passed")
    sp = command("attest", cmd_attest, "attest a checklist item, with evidence")
    sp.add_argument("item", metavar="ITEM", help="the item's name as in the checklist, or its slug")
    verdict = sp.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--pass", dest="passed", action="store_true")
    verdict.add_argument("--fail", dest="passed", action="store_false")
    sp.add_argument("--evidence", required=True, help="what the attestation rests on")
    sp.add_argument("--valid-for", type=_duration, default=None, help="how long it holds (default 90d)")

    sp = command("audit", cmd_audit, "the hash-chained audit log")
    asub = sp.add_subparsers(dest="audit_command", metavar="list|verify|head|key")
    al = asub.add_parser("list", help="newest entries first")
    al.add_argument("--limit", type=_limit, default=50)
    al.add_argument("--search", default=None)
    al.add_argument("--json", action="store_true")
    av = asub.add_parser("verify", help="check the chain, the recorded head and the state; names the first "
                                        "edited, removed or reordered entry and every unaudited state change")
    av.add_argument("--expect-head", default=None, metavar="SEQ:HASH",
                    help="a head recorded earlier (`audit head`, the anchor file): the log must still hold it")
    av.add_argument("--anchor-file", default=None, metavar="PATH",
                    help="the audit-anchor job's file: the log must still hold the newest head anchored in it")
    av.add_argument("--json", action="store_true")
    ah = asub.add_parser("head", help="the newest entry's SEQ:HASH, to record outside the store")
    ah.add_argument("--json", action="store_true")
    ak = asub.add_parser("key", help="the audit key: `key init` creates it (if missing) and keys the chain")
    ak.add_argument("key_command", choices=("init", "show"))
    ak.add_argument("--json", action="store_true")
    sp.set_defaults(audit_command="list", limit=50, search=None)

    sp = command("roles", cmd_roles, "list, grant and revoke roles")
    rsub = sp.add_subparsers(dest="roles_command", metavar="list|grant|revoke")
    rl = rsub.add_parser("list")
    rl.add_argument("--json", action="store_true")
    for name in ("grant", "revoke"):
        rp = rsub.add_parser(name)
        rp.add_argument("user")
        rp.add_argument("role")
        rp.add_argument("--json", action="store_true")

    sp = command("db", cmd_db, "create, migrate, back up and prune the store", json_flag=False)
    dsub = sp.add_subparsers(dest="db_command", metavar="init|migrate|backup|prune|import-config", required=True)
    di = dsub.add_parser("init", help="create a new store at L3; you become its first admin")
    di.add_argument("--phase-started", type=_date, default=None,
                    help="when the organisation entered L3 (keeps your history), e.g. 2026-03-01")
    dsub.add_parser("migrate", help="apply schema migrations")
    db = dsub.add_parser("backup", help="consistent online copy of a SQLite store")
    db.add_argument("path")
    db.add_argument("--compress", action="store_true", help="gzip the copy (implied by a PATH ending in .gz)")
    db.add_argument("--keep", type=_duration, default=None, metavar="DURATION",
                    help="then delete older backups of the same name family in PATH's directory, e.g. 30d")
    dp = dsub.add_parser("prune", help="delete raw events and snapshots older than a duration")
    dp.add_argument("--older-than", type=_duration, default=timedelta(days=90))
    dp.add_argument("--json", action="store_true")
    cli_policies.register_db(dsub)

    sp = command("events", cmd_events, "circuit-breaker events: list, show (drill down) and resolve")
    esub = sp.add_subparsers(dest="events_command", metavar="list|show|resolve")
    el = esub.add_parser("list")
    el.add_argument("--unresolved", action="store_true")
    el.add_argument("--limit", type=_limit, default=100)
    el.add_argument("--json", action="store_true")
    es = esub.add_parser("show", help="what made the event trip (commands, incidents, the metric against its "
                                      "threshold), what it did, and its resolution")
    es.add_argument("id")
    es.add_argument("--json", action="store_true")
    er = esub.add_parser("resolve", help="resolve an event (un-pauses its command type)")
    er.add_argument("id")
    er.add_argument("--note", required=True, help="what was found and done")
    er.add_argument("--false-positive", action="store_true", help="the trip was not a real problem")
    er.add_argument("--json", action="store_true")
    sp.set_defaults(events_command="list", unresolved=False, limit=100)

    sp = command("alerts", cmd_alerts, "the alert outbox: list; retry or dismiss dead-lettered alerts")
    asub = sp.add_subparsers(dest="alerts_command", metavar="list|retry|dismiss|sinks")
    al = asub.add_parser("list", help="waiting and dead-lettered alerts, newest first (--status to choose)")
    al.add_argument("--status", choices=(*ALERT_STATUSES, "all"), default=None)
    al.add_argument("--limit", type=_limit, default=100)
    al.add_argument("--json", action="store_true")
    for name, help in (("retry", "queue dead-lettered alerts again once their cause is fixed"),
                       ("dismiss", "give up on dead-lettered alerts for good (they leave the header's count)")):
        ap = asub.add_parser(name, help=help, description=help)
        which = ap.add_mutually_exclusive_group(required=True)
        which.add_argument("ids", nargs="*", type=int, metavar="ID", default=[])
        which.add_argument("--dead", action="store_true", help="every dead-lettered alert")
        if name == "dismiss":
            ap.add_argument("--reason", required=True, help="why they will never be sent")
        ap.add_argument("--json", action="store_true")
    cli_policies.register_sinks(asub)
    sp.set_defaults(alerts_command="list", status=None, limit=100, ids=[], dead=False)
    cli_policies.register(command, _duration)

    sp = command("rules", cmd_rules, "circuit-breaker rules: list, show, add, set, backtest, mode")
    rsub = sp.add_subparsers(dest="rules_command", metavar="list|show|add|set|backtest|mode")
    rsub.add_parser("list").add_argument("--json", action="store_true")
    rs = rsub.add_parser("show")
    rs.add_argument("name")
    rs.add_argument("--json", action="store_true")

    def rule_options(rp: argparse.ArgumentParser, *, required: bool) -> None:
        rp.add_argument("--condition", required=required, help='e.g. "errorRate > 0.05"')
        rp.add_argument("--window", required=required, help="30s, 5m, 1h, 1d")
        rp.add_argument("--action", required=required, choices=("revert_to_l3", "pause_command_type", "alert_only"))
        rp.add_argument("--severity", required=required, choices=("critical", "high", "medium", "low"))
        rp.add_argument("--min-samples", type=int, default=None)
        en = rp.add_mutually_exclusive_group()
        en.add_argument("--enable", dest="enabled", action="store_true", default=None)
        en.add_argument("--disable", dest="enabled", action="store_false")
        sh = rp.add_mutually_exclusive_group()
        sh.add_argument("--shadow", dest="shadow", action="store_true", default=None,
                        help="this rule only records what it would have done (try a new rule out)")
        sh.add_argument("--enforce", dest="shadow", action="store_false", help="this rule acts when it trips")
        rp.add_argument("--recovery", choices=("half_open", "manual"), default=None,
                        help="pause_command_type: probe the type after resolution (half_open, the default) "
                             "or give it back at once (manual)")
        rp.add_argument("--cooldown", default=None, help="pause_command_type: half-open by itself after this long")
        rp.add_argument("--probes", type=int, default=None, help="succeeded probes that close it (default 3)")
        rp.add_argument("--json", action="store_true")

    ra = rsub.add_parser("add", help="add a rule (validated before it is stored)")
    ra.add_argument("name")
    rule_options(ra, required=True)
    rset = rsub.add_parser("set", help="change a rule (audited with before and after)")
    rset.add_argument("name")
    rule_options(rset, required=False)
    rb = rsub.add_parser("backtest", help="what a rule or a draft would have done over stored history")
    rb.add_argument("name", nargs="?")
    rb.add_argument("--condition")
    rb.add_argument("--window")
    rb.add_argument("--min-samples", type=int, default=None)
    rb.add_argument("--days", type=int, default=30)
    rb.add_argument("--json", action="store_true")
    rm = rsub.add_parser("mode", help="enforce, or shadow (record what would have happened, change nothing)")
    rm.add_argument("mode", choices=("enforce", "shadow"))
    rm.add_argument("--reason", default="")
    rm.add_argument("--json", action="store_true")
    sp.set_defaults(rules_command="list")

    sp = command("revert", cmd_revert, "manual reversion to L3 (phase L3, whitelist cleared)")
    sp.add_argument("--reason", required=True)
    sp = command("kill-switch", cmd_kill_switch, "engage or release the kill switch, or drill it")
    sp.add_argument("action", choices=("engage", "release", "drill"))
    sp.add_argument("--reason", default=None)
    cli_actions.register(command, _duration, _limit)  # its int arguments are --limit
    cli_agents.register(command)

    command("cycle", cmd_cycle, "run the governance cycle now: report, and a proposal when ready")
    sp = command("proposals", cmd_proposals, "scope-expansion proposals: list, show, approve, reject, extend")
    psub = sp.add_subparsers(dest="proposals_command", metavar="list|show|approve|reject|extend")
    pl = psub.add_parser("list")
    pl.add_argument("--status", choices=("pending", "approved", "rejected", "expired"), default=None)
    pl.add_argument("--json", action="store_true")
    ps = psub.add_parser("show")
    ps.add_argument("id")
    ps.add_argument("--json", action="store_true")
    pa = psub.add_parser("approve", help="approve as one of your roles")
    pa.add_argument("id")
    pa.add_argument("--role", required=True)
    pa.add_argument("--json", action="store_true")
    pr = psub.add_parser("reject")
    pr.add_argument("id")
    pr.add_argument("--reason", required=True)
    pr.add_argument("--json", action="store_true")
    pe = psub.add_parser("extend", help="a longer validation period: of a pending proposal, or the running one")
    pe.add_argument("id")
    pe.add_argument("--days", type=_positive_int, required=True, help="the whole period, in days (more than now)")
    pe.add_argument("--reason", required=True)
    pe.add_argument("--json", action="store_true")
    sp.set_defaults(proposals_command="list", status=None)

    sp = command("scheduler", cmd_scheduler, "run the scheduled jobs headless (one leader per store)",
                 json_flag=False)
    sp.add_argument("--run-for", type=float, default=None, help=argparse.SUPPRESS)
    sp.add_argument("--log-file", default=None, help="log here (INFO and up) instead of warnings on stderr")
    sp.add_argument("--log-format", choices=("text", "json"), default="text",
                    help="text lines (default) or json: one object per line (time, level, logger, message, fields)")

    cli_serve.register(command)
    cli_run.register(command, _positive_int)

    sp = command("demo", cmd_demo, "the console on a scratch store with history and a live agent",
                 json_flag=False)
    sp.add_argument("--path", default=None, help="where to keep the scratch store (default: a temp dir)")
    return p


def setup_logging(level: int = logging.WARNING) -> None:
    """Warnings and errors to stderr, every line through the secret redactor (once per process)."""
    root = logging.getLogger()
    if any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(CleanFormatter("govcon: %(levelname)s %(name)s: %(message)s"))  # escapes shown
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)


def runs_long(args: argparse.Namespace) -> bool:
    """The commands that keep running (the service, the demo's console), which collect before freezing."""
    return args.handler in (cli_serve.cmd_serve, cmd_demo)


def main(argv: list[str] | None = None, *, clock: Clock | None = None,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    # control characters in stored values print escaped (render.clean); a CleanStream stands in for the TextIO
    # it wraps (what it does not define itself it takes from that stream)
    out = cast(TextIO, CleanStream(out or sys.stdout))
    err = cast(TextIO, CleanStream(err or sys.stderr))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is not cmd_console:  # the console resumes once its first dashboard is on the screen
        startup.resume(collect=runs_long(args))  # a one-shot command ends before its garbage matters
    setup_logging()
    ctx = Context(args, clock or SystemClock(), out, err)
    try:
        refuse_server_host_only(ctx)
        return args.handler(ctx)
    except GovconError as exc:
        print(f"govcon: {exc}", file=err)
        return exc.exit_code
    except (StoreUnavailable, ConfigError, BackupNotSupported, FileExistsError) as exc:
        print(f"govcon: {exc}", file=err)
        return 1
    except BrokenPipeError:  # `govcon … | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("govcon: interrupted", file=err)
        return 130
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
