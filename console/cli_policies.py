"""`govcon policies …`, `govcon alerts sinks …` and `govcon db import-config` (registered by console/cli.py):
gate policies and alert routing as the store keeps them (engine/store_config.py). Roles admin and ops-lead;
every change one transaction with one audit entry (before and after). A sink's URL and routing key are
never printed back: list, show, --json and the audit log show them masked, with a fingerprint.

A secret given as ``-`` (``--url -``, ``--routing-key -``) is read from stdin (one line), so that it stays
out of the process list and the shell's history.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from console.render import clean
from engine.errors import InvalidInput
from engine.policies import limits_text
from engine.store_config import import_config, relabel

#: the config file's policy keys, as `policies set` names them in errors
POLICY_FLAGS = {"command_types": "--command-types", "max_per_day": "--max-per-day", "max_per_week": "--max-per-week",
                "min_interval": "--min-interval", "max_concurrent": "--max-concurrent",
                "confidence_threshold": "--confidence", "maintenance_window": "--maintenance-window",
                "maintenance_window_required": "--window-required", "notification_level": "--notification-level",
                "requires_approval": "--requires-approval", "rollback_mandatory": "--rollback-mandatory",
                "calibrated": "--calibrated", "grant_ttl": "--grant-ttl", "enabled": "--enable/--disable",
                "per_service": "--per-service", "approver_roles": "--approver-roles", "request_ttl": "--request-ttl",
                "stable_for": "--stable-for"}
SINK_FLAGS = {"type": "--kind", "url": "--url", "routing_key": "--routing-key", "severities": "--severities",
              "timeout": "--timeout", "reports": "--reports", "from": "--from", "to": "--to",
              "username": "--username", "password_env": "--password-env", "ca_file": "--ca-file"}
CLEAR = ("none", "off", "")


def register(command, duration) -> None:
    """``command(name, handler, help)`` adds a subcommand; ``duration`` parses 30s/5m/1h/1d."""
    sp = command("policies", cmd_policies, "gate policies (in the store): list, show, set, delete")
    psub = sp.add_subparsers(dest="policies_command", metavar="list|show|set|delete")
    psub.add_parser("list", help="every policy and its limits").add_argument("--json", action="store_true")
    ps = psub.add_parser("show", help="one policy, every setting")
    ps.add_argument("name")
    ps.add_argument("--json", action="store_true")
    pd = psub.add_parser("delete", help="delete a policy (audited)")
    pd.add_argument("name")
    pd.add_argument("--reason", default="")
    pd.add_argument("--json", action="store_true")
    pset = psub.add_parser(
        "set", help="create or change a policy (audited with before and after); settings not given are kept; "
                    "'none' clears a limit", description="create or change a policy (audited with before and "
                    "after); settings not given are kept; 'none' clears a limit")
    pset.add_argument("name")
    pset.add_argument("--command-types", metavar="T[,T…]", help="the command types it covers (required when new)")
    for flag, meta, what in (("--max-per-day", "N", "grants per 24 hours"),
                             ("--max-per-week", "N", "grants per 7 days"),
                             ("--min-interval", "D", "at least this long between grants (30s, 5m, 1h)"),
                             ("--max-concurrent", "N", "grants in flight at once"),
                             ("--confidence", "X", "the confidence an ask needs, 0..1"),
                             ("--maintenance-window", "HH:MM-HH:MM", "UTC; allows only inside it"),
                             ("--grant-ttl", "D", "a grant without an outcome by then expires (default 15m)"),
                             ("--request-ttl", "D", "an action request undecided by then expires (default 30m)"),
                             ("--stable-for", "D", "no incident on the ask's service for this long")):
        pset.add_argument(flag, metavar=meta, default=None, help=f"{what}; none clears it")
    pset.add_argument("--notification-level", choices=("info", "alert", "approval_required"), default=None)
    pset.add_argument("--approver-roles", metavar="R[,R…]", default=None, help="who approves its action requests")
    for flag, what in (("--requires-approval", "never autonomous: every action is approved by a human"),
                       ("--rollback-mandatory", "`govcon run` refuses to run without --rollback"),
                       ("--calibrated", "judge the agent's calibrated confidence"),
                       ("--per-service", "count the limits per service"),
                       ("--window-required", "allow only inside the maintenance window (on by default with "
                                             "--maintenance-window)")):
        pset.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=what)
    en = pset.add_mutually_exclusive_group()
    en.add_argument("--enable", dest="enabled", action="store_true", default=None)
    en.add_argument("--disable", dest="enabled", action="store_false", help="every action of its types needs approval")
    pset.add_argument("--replace", action="store_true", help="settings not given go back to their defaults")
    pset.add_argument("--reason", default="")
    pset.add_argument("--json", action="store_true")
    sp.set_defaults(policies_command="list")


def register_sinks(alerts_sub) -> None:
    """`govcon alerts sinks list|show|set|delete`, beside `alerts list|retry|dismiss`."""
    sp = alerts_sub.add_parser("sinks", help="alert sinks and their routing (in the store): list, show, set, delete",
                               description="alert sinks and their routing (in the store): list, show, set, delete")
    sp.set_defaults(handler=cmd_sinks, sinks_command="list")
    ssub = sp.add_subparsers(dest="sinks_command", metavar="list|show|set|delete")
    ssub.add_parser("list", help="every sink, secrets masked").add_argument("--json", action="store_true")
    ss = ssub.add_parser("show", help="one sink, secrets masked")
    ss.add_argument("name")
    ss.add_argument("--json", action="store_true")
    sd = ssub.add_parser("delete", help="delete a sink (audited)")
    sd.add_argument("name")
    sd.add_argument("--reason", default="")
    sd.add_argument("--json", action="store_true")
    sset = ssub.add_parser("set", help="create or change a sink (audited; the secret never printed back)",
                           description="create or change a sink (audited; its URL and routing key are never "
                                       "printed back). Settings not given are kept, the secret included, unless "
                                       "--kind changes. '-' reads a secret from stdin.")
    sset.add_argument("name")
    sset.add_argument("--kind", choices=("webhook", "slack", "pagerduty", "smtp"), default=None,
                      help="required for a new sink")
    sset.add_argument("--url", default=None, help="where to send (- : read it from stdin)")
    sset.add_argument("--routing-key", default=None, help="pagerduty: the Events API v2 integration key "
                                                          "(- : read it from stdin)")
    sset.add_argument("--severities", metavar="S[,S…]", default=None,
                      help="which alert severities it takes (critical, high, medium, low); default by kind")
    sset.add_argument("--timeout", default=None, metavar="SECONDS")
    sset.add_argument("--reports", action=argparse.BooleanOptionalAction, default=None,
                      help="each governance cycle's report goes to it (default: smtp only)")
    sset.add_argument("--from", dest="mail_from", default=None, help="smtp: the sender address")
    sset.add_argument("--to", default=None, metavar="A[,A…]", help="smtp: the recipients")
    sset.add_argument("--username", default=None, help="smtp: the login (with --password-env)")
    sset.add_argument("--password-env", default=None, help="smtp: the environment variable holding the password "
                                                         "(the deliverer's environment; never the password)")
    sset.add_argument("--ca-file", default=None, help="smtp: a private CA")
    sset.add_argument("--reason", default="")
    sset.add_argument("--json", action="store_true")


def register_db(db_sub) -> None:
    di = db_sub.add_parser("import-config", help="import the config file's [policies] and [[alerts.sinks]] into "
                                                 "the store (audited); from then on the store's decide")
    di.add_argument("--replace", action="store_true",
                    help="also delete the store's policies and sinks the file does not name")
    di.add_argument("--json", action="store_true")
    di.set_defaults(handler=cmd_import_config)


# --- handlers ----------------------------------------------------------------------------------------


def cmd_policies(ctx) -> int:
    a, book = ctx.args, ctx.gov.policy_book
    return _book_command(ctx, book, a.policies_command, "policy", print_policy, print_policies,
                         set_one=lambda: book.set(ctx.operator, a.name, policy_changes(a), replace=a.replace,
                                                  reason=a.reason),
                         relabel=lambda message: relabel(message, a.name, POLICY_FLAGS))


def cmd_sinks(ctx) -> int:
    a, book = ctx.args, ctx.gov.sink_book
    return _book_command(ctx, book, a.sinks_command, "alert sink", print_sink, print_sinks,
                         set_one=lambda: book.set(ctx.operator, a.name, sink_changes(a), reason=a.reason),
                         relabel=_sink_labels)


def _book_command(ctx, book, command: str, noun: str, print_one: Callable[[dict[str, Any], TextIO], None],
                  print_all: Callable[[list[dict[str, Any]], TextIO], None], *,
                  set_one: Callable[[], dict[str, Any]], relabel: Callable[[str], str]) -> int:
    """`policies …` and `alerts sinks …`, which answer alike (engine/store_config.py): show, delete, set
    (its errors in the flags' words) or list, each as text or with --json."""
    a = ctx.args
    if command == "show":
        doc = book.show(a.name)
        ctx.emit_json(doc) if a.json else print_one(doc, ctx.out)
    elif command == "delete":
        doc = book.delete(ctx.operator, a.name, reason=a.reason)
        ctx.emit_json(doc) if a.json else print(f"deleted {noun} {clean(a.name)}", file=ctx.out)
    elif command == "set":
        try:
            doc = set_one()
        except InvalidInput as exc:
            raise InvalidInput(relabel(str(exc))) from None
        if a.json:
            ctx.emit_json(doc)
        else:
            verb = "created" if doc["created"] else "changed" if doc["changed"] else "unchanged:"
            print(f"{verb} {noun} {clean(a.name)}", file=ctx.out)
            print_one(doc["policy" if "policy" in doc else "sink"], ctx.out)
    else:
        docs = book.list()
        ctx.emit_json(docs) if getattr(a, "json", False) else print_all(docs, ctx.out)
    return 0


def cmd_import_config(ctx) -> int:
    config = ctx.config
    if config.path is None:
        raise InvalidInput("there is no config file to import (set GOVCON_CONFIG or create "
                           "~/.config/govcon/config.toml)")
    policies, sinks = config.file_policies(), config.file_sinks()
    if policies is None and sinks is None:
        raise InvalidInput(f"{config.path} has neither [policies] nor [[alerts.sinks]]: nothing to import")
    gov = ctx.gov
    doc = import_config(gov.store, gov.clock, ctx.operator, policies=policies, sinks=sinks,
                        source=str(config.path), replace=ctx.args.replace)
    if ctx.args.json:
        ctx.emit_json(doc)
        return 0
    for what in ("policies", "sinks"):
        counts = doc[what]
        done = [f"{k} {', '.join(map(clean, v))}" for k, v in counts.items() if v and k != "unchanged"]
        same = f"{len(counts['unchanged'])} unchanged" if counts["unchanged"] else ""
        print(f"{what}: " + ("; ".join([*done, same] if same else done) or "none in the file"), file=ctx.out)
    print(f"imported from {clean(str(config.path))}; from now on the store's policies and sinks decide for every "
          "process (`govcon policies list`, `govcon alerts sinks list`)", file=ctx.out)
    return 0


# --- arguments into changes --------------------------------------------------------------------------


def _int(flag: str, text: str | None) -> Any:
    if text is None:
        return ...
    if text.strip().lower() in CLEAR:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"{flag}: {text!r} is not a whole number (or none)") from None


def _float(flag: str, text: str | None) -> Any:
    if text is None:
        return ...
    if text.strip().lower() in CLEAR:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"{flag}: {text!r} is not a number (or none)") from None


def _text(text: str | None) -> Any:
    if text is None:
        return ...
    return None if text.strip().lower() in CLEAR else text.strip()


def _list(text: str | None) -> Any:
    if text is None:
        return ...
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def policy_changes(a: argparse.Namespace) -> dict[str, Any]:
    """The settings `policies set` names, in the config file's spelling (None: clear it)."""
    values = {
        "command_types": _list(a.command_types),
        "max_per_day": _int("--max-per-day", a.max_per_day),
        "max_per_week": _int("--max-per-week", a.max_per_week),
        "min_interval": _text(a.min_interval),
        "max_concurrent": _int("--max-concurrent", a.max_concurrent),
        "confidence_threshold": _float("--confidence", a.confidence),
        "grant_ttl": _text(a.grant_ttl),
        "request_ttl": _text(a.request_ttl),
        "stable_for": _text(a.stable_for),
        "notification_level": a.notification_level if a.notification_level is not None else ...,
        "approver_roles": _list(a.approver_roles),
        "requires_approval": a.requires_approval if a.requires_approval is not None else ...,
        "rollback_mandatory": a.rollback_mandatory if a.rollback_mandatory is not None else ...,
        "calibrated": a.calibrated if a.calibrated is not None else ...,
        "per_service": a.per_service if a.per_service is not None else ...,
        "enabled": a.enabled if a.enabled is not None else ...,
        "maintenance_window_required": a.window_required if a.window_required is not None else ...,
    }
    window = _text(a.maintenance_window)
    if window is not ...:
        values["maintenance_window"] = window
        if window is None:
            values["maintenance_window_required"] = None
        elif a.window_required is None:
            values["maintenance_window_required"] = True
    return {k: v for k, v in values.items() if v is not ...}


def _secret(flag: str, value: str | None) -> str | None:
    if value != "-":
        return value
    line = sys.stdin.readline().strip()
    if not line:
        raise InvalidInput(f"{flag} -: nothing on stdin (give the value on one line)")
    return line


def sink_changes(a: argparse.Namespace) -> dict[str, Any]:
    """The settings `alerts sinks set` names, in the config file's spelling (None: clear it)."""
    values: dict[str, Any] = {
        "type": a.kind if a.kind is not None else ...,
        "url": _secret("--url", a.url) if a.url is not None else ...,
        "routing_key": _secret("--routing-key", a.routing_key) if a.routing_key is not None else ...,
        "severities": _list(a.severities),
        "timeout": _float("--timeout", a.timeout),
        "reports": a.reports if a.reports is not None else ...,
        "from": _text(a.mail_from),
        "to": _list(a.to),
        "username": _text(a.username),
        "password_env": _text(a.password_env),
        "ca_file": _text(a.ca_file),
    }
    return {k: v for k, v in values.items() if v is not ...}


def _sink_labels(message: str) -> str:
    for key, flag in SINK_FLAGS.items():
        message = re.sub(rf"(?<![\w-]){re.escape(key)}(?![\w-])(?= (must|is|has|and|go))", flag, message)
    return message


# --- output ------------------------------------------------------------------------------------------


def print_policies(docs: list[dict[str, Any]], out: TextIO) -> None:
    if not docs:
        out.write("no policies: the whitelist and the phase alone decide (add one with `govcon policies set`)\n")
        return
    width = max(len("POLICY"), *(len(clean(d["name"])) for d in docs))
    types_w = max(len("COMMAND TYPES"), *(len(clean(",".join(d["commandTypes"]))) for d in docs))
    types_w = min(types_w, 32)
    out.write(f"{'POLICY':<{width}}  {'COMMAND TYPES':<{types_w}}  {'NOTIFY':<17}  LIMITS\n")
    for d in docs:
        types = clean(",".join(d["commandTypes"]))
        out.write(f"{clean(d['name']):<{width}}  {types:<{types_w}}  {d['notificationLevel']:<17}  "
                  f"{limits_text(d)}\n")


def print_policy(doc: dict[str, Any], out: TextIO) -> None:
    out.write(f"policy {clean(doc['name'])}: {limits_text(doc)}\n")
    for key, value in doc.items():
        if key in ("name", "spec"):
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else "-" if value is None else value
        out.write(f"  {key:<26} {clean(str(shown))}\n")


def print_sinks(docs: list[dict[str, Any]], out: TextIO) -> None:
    if not docs:
        out.write("no alert sinks: alerts are logged only (add one with `govcon alerts sinks set NAME --kind …`)\n")
        return
    width = max(len("SINK"), *(len(clean(d["name"])) for d in docs))
    out.write(f"{'SINK':<{width}}  {'KIND':<9}  {'SEVERITIES':<26}  {'REPORTS':<7}  URL (masked)\n")
    for d in docs:
        sev = ",".join(d.get("severities") or []) or "-"
        url = d.get("url") or "-"
        if "invalid" in d:
            url = f"INVALID: {d['invalid']}"
        out.write(f"{clean(d['name']):<{width}}  {d['kind']:<9}  {sev:<26}  {'yes' if d.get('reports') else 'no':<7}  "
                  f"{clean(url)}\n")


def print_sink(doc: dict[str, Any], out: TextIO) -> None:
    out.write(f"alert sink {clean(doc['name'])} ({doc['kind']}); the URL and routing key are never shown\n")
    for key, value in doc.items():
        if key in ("name", "kind"):
            continue
        if key in ("to",) and not value:
            continue
        if value is None:
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        out.write(f"  {key:<18} {clean(str(shown))}\n")
