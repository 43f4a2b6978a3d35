"""`govcon gate`, `govcon gate log`, `govcon actions …` and `govcon mode` (registered by console/cli.py).

Exit codes of `govcon gate`: 0 allow, 3 needs_approval (or a request still undecided), 4 deny or rejected.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TextIO

from console.gate_cli import ALLOW_EXIT, DENY_EXIT, WAIT_EXIT, print_decision
from console.render import clean as _clean
from console.render import print_policies
from engine.actions import wait_for_decision
from engine.clock import isoformat
from engine.errors import InvalidInput
from engine.gate import DENY, GateDecision

#: the word `govcon gate log` reserves: a command type cannot be called "log"
LOG = "log"


def register(command, duration, positive_int) -> None:
    """``command(name, handler, help)`` adds a subcommand; ``duration`` and ``positive_int`` are the CLI's
    argument types."""
    sp = command("gate", cmd_gate, "may this command type run autonomously now? exit 0 allow (a grant), "
                 "3 needs_approval, 4 deny; `gate log` lists past decisions")
    sp.add_argument("type", metavar="TYPE|log")
    sp.add_argument("--service", default=None, help="the service the action touches (budgets may count per service)")
    sp.add_argument("--agent", default=None, help="the agent asking (default: you)")
    sp.add_argument("--confidence", type=float, default=None, help="the agent's confidence, 0..1")
    sp.add_argument("--action-class", default=None, help="a policy name: can add its limits, never loosen")
    sp.add_argument("--request", action="store_true",
                    help="queue a needs_approval answer as an action request for a human")
    sp.add_argument("--wait", type=duration, default=None,
                    help="with --request: wait this long (e.g. 10m) for the decision")
    sp.add_argument("--explain", action="store_true", help="show the policies that apply and their limits")
    sp.add_argument("--since", type=duration, default=None, help="gate log: how far back (default 1d)")
    sp.add_argument("--limit", type=positive_int, default=100, help="gate log: at most this many (default 100)")

    sp = command("actions", cmd_actions, "governed actions: pending requests, grants in flight, approve, reject")
    asub = sp.add_subparsers(dest="actions_command", metavar="list|show|approve|reject")
    al = asub.add_parser("list", help="action requests and grants, newest first")
    which = al.add_mutually_exclusive_group()
    which.add_argument("--pending", action="store_true", help="only requests waiting for a human")
    which.add_argument("--in-flight", action="store_true", help="only grants without an outcome yet")
    al.add_argument("--limit", type=positive_int, default=100)
    al.add_argument("--json", action="store_true")
    ash = asub.add_parser("show", help="one request or grant, with its action report")
    ash.add_argument("id")
    ash.add_argument("--json", action="store_true")
    aa = asub.add_parser("approve", help="approve a pending request: the agent gets a grant to act once")
    aa.add_argument("id")
    aa.add_argument("--note", default=None)
    aa.add_argument("--json", action="store_true")
    ar = asub.add_parser("reject", help="reject a pending request, saying why")
    ar.add_argument("id")
    ar.add_argument("--reason", required=True)
    ar.add_argument("--json", action="store_true")
    sp.set_defaults(actions_command="list", pending=False, in_flight=False, limit=100)

    sp = command("mode", cmd_mode, "the degradation mode: normal, minimal (only minimal_allowed classes act), "
                 "read_only (nothing acts but reads)")
    msub = sp.add_subparsers(dest="mode_command", metavar="set")
    ms = msub.add_parser("set", help="change the mode (audited; alerted)")
    ms.add_argument("mode", choices=("normal", "minimal", "read_only"))
    ms.add_argument("--reason", required=True)
    ms.add_argument("--json", action="store_true")


# --- govcon gate ---------------------------------------------------------------------------------


def cmd_gate(ctx) -> int:
    a = ctx.args
    if a.type == LOG:
        return _gate_log(ctx)
    if a.wait is not None and not a.request:
        raise InvalidInput("--wait needs --request (there is nothing to wait for otherwise)")
    try:
        gov = ctx.gov
    except Exception as exc:  # fail closed: a store we cannot open allows nothing
        decision = GateDecision(DENY, f"store unreachable, failing closed: {exc}", a.type, None)
        return _print_decision(ctx, decision.to_json(), decision.exit_code)
    if a.explain:
        policies = gov.policies.applicable(a.type, a.action_class)
        doc = {"commandType": a.type, "policy": policies[0].to_json() if policies else None,
               "applicable": [p.name for p in policies], "policies": gov.policies.explain()}
        if a.json:
            ctx.emit_json(doc)
        else:
            print_policies(doc, ctx.out)
        return 0
    decision = gov.gate.decide(a.type, confidence=a.confidence, action_class=a.action_class, service=a.service,
                               agent=a.agent or ctx.operator, request=a.request, requested_by=ctx.operator)
    doc, code = decision.to_json(), decision.exit_code
    if decision.request_id is not None and a.wait is not None:
        shown = wait_for_decision(gov.actions.wait, decision.request_id, a.wait.total_seconds())
        doc, code = _after_wait(doc, shown)
    return _print_decision(ctx, doc, code)


def _after_wait(doc: dict[str, Any], shown: dict[str, Any]) -> tuple[dict[str, Any], int]:
    request = shown["request"]
    status = request["status"]
    doc = {**doc, "request": request}
    if status == "approved" and shown["grant"] is not None:
        grant = shown["grant"]
        return {**doc, "decision": "allow", "reason": f"approved by {request['decidedBy']}"
                + (f": {request['note']}" if request.get("note") else ""), "grantId": grant["grantId"],
                "expiresAt": grant["expiresAt"]}, ALLOW_EXIT
    if status in ("rejected", "expired"):
        why = f"rejected by {request['decidedBy']}: {request['note']}" if status == "rejected" else \
            "the request expired undecided (it counts as rejected)"
        return {**doc, "decision": "deny", "reason": why}, DENY_EXIT
    return {**doc, "reason": f"{doc['reason']} — request {request['requestId']} still pending"}, WAIT_EXIT


def _print_decision(ctx, doc: dict[str, Any], code: int) -> int:
    return print_decision(doc, code, ctx.out, as_json=ctx.args.json)


def _gate_log(ctx) -> int:
    a = ctx.args
    since = ctx.clock.now() - (a.since or timedelta(days=1))
    doc = ctx.gov.actions.decisions(since=since, limit=a.limit)
    if a.json:
        ctx.emit_json(doc)
        return 0
    out: TextIO = ctx.out
    if not doc["decisions"]:
        out.write(f"no gate decisions since {isoformat(since)}\n")
    for d in doc["decisions"]:
        who = d["agent"] or "?"
        on = f" on {d['service']}" if d["service"] else ""
        conf = f" conf {d['confidence']:.2f}" if d["confidence"] is not None else ""
        ref = d["grantId"] or d["requestId"] or ""
        out.write(f"{d['at']}  {d['decision']:<14} {_clean(d['commandType'])}{_clean(on)} by {_clean(who)}{conf}"
                  f"  {ref}\n    {_clean(d['reason'])}\n")
    orphans = doc["outcomesWithoutGrant"]
    if orphans:
        out.write(f"\n{len(orphans)} outcome(s) name a grant that never existed:\n")
        for o in orphans:
            out.write(f"  {o['at']}  {_clean(o['id'])}  {_clean(o['commandType'])} {o['status']}\n")
    return 0


# --- govcon actions --------------------------------------------------------------------------------


def cmd_actions(ctx) -> int:
    a = ctx.args
    book = ctx.gov.actions
    sub = a.actions_command or "list"
    if sub == "list":
        doc = book.list(pending=a.pending, in_flight=a.in_flight, limit=a.limit)
        ctx.emit_json(doc) if a.json else print_actions(doc, ctx.out)
        return 0
    if sub == "show":
        doc = book.show(a.id)
    elif sub == "approve":
        doc = book.approve(ctx.operator, a.id, a.note)
    else:
        doc = book.reject(ctx.operator, a.id, a.reason)
    ctx.emit_json(doc) if a.json else print_action(doc, ctx.out)
    return 0


def print_actions(doc: dict[str, Any], out: TextIO) -> None:
    requests, grants = doc["requests"], doc["grants"]
    if not requests and not grants:
        out.write("no action requests or grants\n")
    if requests:
        out.write("action requests:\n")
        for r in requests:
            on = f" on {r['service']}" if r["service"] else ""
            out.write(f"  {r['requestId']}  {r['status']:<9} {_clean(r['commandType'])}{_clean(on)} by "
                      f"{_clean(r['agent'])}  asked {r['requestedAt']}  expires {r['expiresAt']}\n"
                      f"      {_clean(r['reason'])}\n")
    if grants:
        out.write("grants:\n")
        for g in grants:
            on = f" on {g['service']}" if g["service"] else ""
            out.write(f"  {g['grantId']}  {g['status']:<11} {_clean(g['commandType'])}{_clean(on)} by "
                      f"{_clean(g['agent'])}  granted {g['grantedAt']}  expires {g['expiresAt']}"
                      + (f"  approved by {_clean(g['approvedBy'])}" if g["approvedBy"] else "") + "\n")


def print_action(doc: dict[str, Any], out: TextIO) -> None:
    r, g = doc["request"], doc["grant"]
    if r is not None:
        out.write(f"action request {r['requestId']}: {r['status']}\n")
        for key in ("commandType", "service", "agent", "confidence", "reason", "requestedBy", "requestedAt",
                    "expiresAt", "decidedBy", "decidedAt", "note", "approverRoles"):
            if r.get(key) not in (None, "", []):
                out.write(f"  {key:<14} {_clean(r[key])}\n")
    if g is not None:
        out.write(f"grant {g['grantId']}: {g['status']}\n")
        for key in ("commandType", "service", "agent", "confidence", "policy", "grantedAt", "expiresAt",
                    "outcomeAt", "approvedBy"):
            if g.get(key) not in (None, ""):
                out.write(f"  {key:<14} {_clean(g[key])}\n")
        report = g.get("report")
        if report:
            out.write(f"action report: {_clean(report.get('outcome', '?'))}\n")
            for step in report.get("steps", []):
                out.write(f"  {_clean(step.get('name', '?')):<10} exit {step.get('exitCode')}  "
                          f"{step.get('durationMs', '?')} ms  {_clean(step.get('command', ''))}\n")
                tail = step.get("outputTail")
                if tail:
                    for line in str(tail).splitlines()[-5:]:
                        out.write(f"      | {_clean(line)}\n")


# --- govcon mode ---------------------------------------------------------------------------------


def cmd_mode(ctx) -> int:
    a = ctx.args
    if getattr(a, "mode_command", None) == "set":
        doc = ctx.gov.modes.set(ctx.operator, a.mode, a.reason)
        ctx.emit_json(doc) if a.json else ctx.out.write(doc["message"] + "\n")
        return 0
    doc = ctx.gov.modes.get()
    ctx.emit_json(doc) if a.json else ctx.out.write(f"mode {doc['mode']}\n")
    return 0

