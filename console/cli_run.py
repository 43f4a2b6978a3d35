"""`govcon run`: the governed runner (registered into the main parser by console/cli.py; the steps are
engine/runner.py's)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from console.client import RemoteRunPort
from engine.errors import InvalidInput
from engine.redact import redact, redact_obj
from engine.runner import (
    DEFAULT_TIMEOUT,
    DEFAULT_VERIFY_INTERVAL,
    DEFAULT_WAIT,
    EXIT_CODES,
    EXIT_STORE,
    ActionsPort,
    GovernancePort,
    Runner,
    RunPlan,
    RunResult,
    parse_seconds,
    split_command,
)

USAGE = ("govcon run TYPE [--service S] [--agent NAME] [--confidence X] [--wait D] [--check CMD]... "
         "[--backup CMD] [--verify CMD [--verify-checks N] [--verify-interval D]] [--rollback CMD] "
         "[--timeout D] [--dry-run] [--json] -- COMMAND [ARG...]")

DESCRIPTION = """\
Run one command as a governed action (seed 004's phases), in this order:
  ask the gate (needs approval: queue an action request, wait up to --wait for a human)
  -> every --check exits 0 (else nothing runs) -> --backup (if it fails, the command never runs)
  -> COMMAND (argv after --, no shell, --timeout; killed with its process group)
  -> --verify passes --verify-checks times in a row, --verify-interval apart (each bounded by the interval)
  -> on a failed command or verify: --rollback
  -> the outcome reported against the grant -> a critical escalation if the rollback fails
  -> the action report (govcon actions show GRANT).
The kill switch, engaged while it runs, stops it before its next step. CMD strings are split like a shell
would split words (shlex), but no shell runs them: write sh -c '...' for pipes. Durations: 500ms, 30s, 5m, 1h.
--timeout bounds every step but the verify (bounded by its interval). The grant bounds them too: every step
but the rollback is cut short to be over a few seconds before the grant expires (the policy's grant_ttl),
and none starts once too little of it is left (exit 19); the rollback may still run to undo a change."""


def _epilog() -> str:
    codes = [*EXIT_CODES, (5, "permission denied: you hold no role that may report outcomes (govcon roles grant …)")]
    return "\n".join(["exit codes:"] + [f"  {code:>3}  {text}" for code, text in sorted(codes)])


def _seconds(text: str) -> float:
    try:
        return parse_seconds(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1")
    return value


def register(command, positive_int) -> None:
    """``command(name, handler, help, json_flag=True)`` adds a subcommand and returns its parser;
    ``positive_int`` is the CLI's argument type for counts."""
    sp = command("run", cmd_run, "run one command as a governed action: gate, checks, backup, verify, rollback, "
                 "report (exit codes: govcon run --help)")
    sp.usage = USAGE
    sp.description = DESCRIPTION
    sp.epilog = _epilog()
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.add_argument("type", metavar="TYPE", help="the command type the gate judges (e.g. restart_service)")
    sp.add_argument("--service", default=None, help="the service it touches (budgets may count per service)")
    sp.add_argument("--agent", default=None, help="the agent acting (default: you)")
    sp.add_argument("--confidence", type=_confidence, default=None, help="the agent's confidence, 0..1")
    sp.add_argument("--wait", type=_seconds, default=DEFAULT_WAIT, metavar="D",
                    help=f"if it needs approval, wait this long for a human (default {DEFAULT_WAIT / 60:g}m; "
                         "0: queue no request, exit 3 at once)")
    sp.add_argument("--check", action="append", default=[], metavar="CMD",
                    help="a pre-flight check that must exit 0 (repeatable, run in order)")
    sp.add_argument("--backup", default=None, metavar="CMD", help="run before the command; if it fails, stop")
    sp.add_argument("--verify", default=None, metavar="CMD", help="must exit 0 after the command")
    sp.add_argument("--verify-checks", type=positive_int, default=None, metavar="N",
                    help="passes needed in a row (default 1)")
    sp.add_argument("--verify-interval", type=_seconds, default=None, metavar="D",
                    help=f"between verifies, and each verify's time limit (default {DEFAULT_VERIFY_INTERVAL:g}s)")
    sp.add_argument("--rollback", default=None, metavar="CMD", help="run when the command or a verify fails")
    sp.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="D",
                    help=f"time limit of each step but the verify (default {DEFAULT_TIMEOUT / 60:g}m)")
    sp.add_argument("--dry-run", action="store_true", help="ask the gate without taking a grant; print the steps")
    sp.set_defaults(argv=[])
    _split_at_double_dash(sp)


def _split_at_double_dash(sp: argparse.ArgumentParser) -> None:
    """Everything after the first ``--`` is the command, verbatim (its own ``--`` and options included):
    argparse alone would match options inside it, or drop a second ``--``."""
    parse = sp.parse_known_args

    def parse_known_args(args=None, namespace=None):
        args = list(args or [])
        head, tail = (args[:args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
        ns, extras = parse(head, namespace)
        if extras and not tail:
            sp.error(f"unrecognized arguments: {' '.join(extras)} "
                     "(put the command after --: govcon run TYPE [OPTIONS] -- COMMAND [ARG...])")
        ns.argv = tail
        return ns, extras

    sp.parse_known_args = parse_known_args  # type: ignore[method-assign]


def build_plan(args: argparse.Namespace):
    argv = list(args.argv)
    if args.verify is None and (args.verify_checks is not None or args.verify_interval is not None):
        raise InvalidInput("--verify-checks and --verify-interval need --verify CMD")
    return RunPlan(
        command_type=args.type, command=tuple(argv), service=args.service, agent=args.agent,
        confidence=args.confidence, wait=args.wait,
        checks=tuple(split_command(c, "--check") for c in args.check),
        backup=split_command(args.backup, "--backup") if args.backup is not None else None,
        verify=split_command(args.verify, "--verify") if args.verify is not None else None,
        verify_checks=args.verify_checks or 1,
        verify_interval=args.verify_interval if args.verify_interval is not None else DEFAULT_VERIFY_INTERVAL,
        rollback=split_command(args.rollback, "--rollback") if args.rollback is not None else None,
        timeout=args.timeout)


def cmd_run(ctx) -> int:
    plan = build_plan(ctx.args)
    err: TextIO = ctx.err

    def progress(line: str) -> None:
        err.write(f"govcon run: {_clean(redact(line))}\n")
        err.flush()

    def output(step: str, line: str) -> None:
        err.write(f"  {step} | {_clean(redact(line.rstrip()))}\n")

    try:
        gov = ctx.gov
    except Exception as exc:  # fail closed: a store we cannot open grants nothing
        result = RunResult(EXIT_STORE, "store_error", f"cannot open the store, so nothing runs: {exc}")
        return _print(ctx, result)
    if getattr(gov, "remote", False):  # client mode: the steps run here, the books are the service's
        port: ActionsPort = RemoteRunPort(gov)
    else:
        port = GovernancePort(gov, ctx.operator)
    runner = Runner(port, progress=progress, on_output=output)
    result = runner.dry_run(plan) if ctx.args.dry_run else runner.run(plan)
    return _print(ctx, result)


def _print(ctx, result) -> int:
    if ctx.args.json:
        ctx.emit_json(redact_obj(result.to_json()))
        return result.exit_code
    out: TextIO = ctx.out
    out.write(f"{result.result}: {_clean(result.message)}\n")
    report = result.report or {}
    if report.get("dryRun"):
        out.write("steps it would run:\n")
        for i, step in enumerate(report["steps"], start=1):
            extra = f"  (timeout {step['timeout']}" + (f", {step['when']}" if step.get("when") else "") + ")"
            out.write(f"  {i}. {step['name']:<8} {_clean(step['command'])}{extra}\n")
    elif result.grant_id:
        out.write(f"grant {result.grant_id}: outcome {report.get('outcome', '?')}"
                  + (" — escalated (critical alert)" if report.get("escalated") else "")
                  + f"; report: govcon actions show {result.grant_id}\n")
        failed = next((s for s in reversed(report.get("steps", [])) if s.get("exitCode") != 0 or s.get("timedOut")),
                      None)
        if failed and failed.get("outputTail") and result.exit_code != 0:
            out.write(f"last output of {failed['name']}:\n")
            for line in str(failed["outputTail"]).splitlines()[-5:]:
                out.write(f"  | {_clean(line)}\n")
    for problem in result.unreported:
        ctx.err.write(f"govcon run: not recorded: {_clean(problem)}\n")
    if result.unreported and report:  # the store lost it: the operator's terminal keeps it
        ctx.err.write("govcon run: the action report, as the store could not keep it:\n")
        ctx.err.write(json.dumps(redact_obj(report), indent=2, default=str) + "\n")
    return result.exit_code


def _clean(value: Any) -> str:
    """Text that came from commands or agents, printed without control characters reaching the terminal."""
    text = value if isinstance(value, str) else str(value)
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
