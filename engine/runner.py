"""The governed runner behind `govcon run` (DESIGN.md "Governed actions"; seed 004, phases 3-6).

The contract's order: ask the gate (queue an action request and wait for a human when it needs
approval) -> every check exits 0 -> the backup -> the command (argv, no shell, bounded by the timeout,
killed with its process group) -> the verify passes N times in a row, each run bounded by the interval
-> on a failed command or verify, the rollback -> the outcome reported against the grant -> an
escalation (critical) when the rollback fails -> the action report (steps, exit codes, durations,
redacted output tails) attached to the grant.

The kill switch (the store's and the marker file's) is read again before every step after the grant:
engaged, the run stops before its next step. A store that cannot be read there stops the run too (fail
closed), and what could not be reported is left to the grant's expiry.

The grant bounds the run too: the gate counts it in flight only until its ``expiresAt`` (the policy's
``grant_ttl``), so every step under it -- the checks, the backup, the command, the verifies -- gets a time
limit cut to be over before then (``GRANT_MARGIN`` and the kill grace kept free), and none starts once too
little of it is left. The grant's time running out is reported as such (``grant_expired``, exit 19):
nothing had run -> the grant is released; the command had run -> rolled back, or ``failed`` without a
rollback. The rollback alone may run past the grant: it undoes, it does not act.

Only what is known is reported: nothing ran -> the grant is released (no outcome event, so a safety net
that worked never counts as a failed command); the command failed, or its verify failed, and nothing
was rolled back -> ``failed``; rolled back -> ``rolled_back``; verified -> ``succeeded``; stopped after
the command but before its verification finished -> no outcome (unknown: the grant expires, alerted).

The runner talks to governance through an ``ActionsPort`` (``GovernancePort`` in-process), so the same
machinery can drive a remote govcon over HTTP. No Textual, no FastAPI, no SQL here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from engine.clock import isoformat
from engine.domain import Decision, RequestStatus
from engine.errors import GovconError, InvalidInput
from engine.redact import redact

if TYPE_CHECKING:
    from engine.governance import Governance

# --- exit codes (documented in docs/runbook.md "Governed runs" and `govcon run --help`) ---------------

EXIT_SUCCEEDED = 0
EXIT_STORE = 1
EXIT_USAGE = 2
EXIT_NEEDS_APPROVAL = 3
EXIT_DENIED = 4
EXIT_CHECK_FAILED = 10
EXIT_BACKUP_FAILED = 11
EXIT_COMMAND_ROLLED_BACK = 12
EXIT_VERIFY_ROLLED_BACK = 13
EXIT_ROLLBACK_FAILED = 14
EXIT_TIMEOUT = 15
EXIT_KILL_SWITCH = 16
EXIT_COMMAND_FAILED = 17
EXIT_VERIFY_FAILED = 18
EXIT_GRANT_EXPIRED = 19
EXIT_INTERRUPTED = 130

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_SUCCEEDED, "succeeded: the command ran and every verify passed (outcome succeeded)"),
    (EXIT_STORE, "store error: the store could not be read or written; the run stopped (an unreported grant "
                 "expires by itself)"),
    (EXIT_USAGE, "bad usage: bad options, a command missing or not executable, or --rollback missing where the "
                 "policy makes it mandatory (nothing asked, no grant taken)"),
    (EXIT_NEEDS_APPROVAL, "needs approval: nobody decided the action request within --wait (or --wait 0)"),
    (EXIT_DENIED, "denied by the gate, or the action request was rejected or expired"),
    (EXIT_CHECK_FAILED, "a --check failed: nothing ran (the grant is released)"),
    (EXIT_BACKUP_FAILED, "the --backup failed: the command never ran (the grant is released)"),
    (EXIT_COMMAND_ROLLED_BACK, "the command failed and --rollback restored (outcome rolled_back)"),
    (EXIT_VERIFY_ROLLED_BACK, "a --verify failed and --rollback restored (outcome rolled_back)"),
    (EXIT_ROLLBACK_FAILED, "the rollback failed: escalated to a human with a critical alert (outcome failed)"),
    (EXIT_TIMEOUT, "the command ran past --timeout and was killed with its process group (then rolled back "
                   "if --rollback was given)"),
    (EXIT_KILL_SWITCH, "stopped by the kill switch before its next step"),
    (EXIT_COMMAND_FAILED, "the command failed and there was no --rollback (outcome failed)"),
    (EXIT_VERIFY_FAILED, "a --verify failed and there was no --rollback (outcome failed)"),
    (EXIT_GRANT_EXPIRED, "the grant's time ran out (its expiresAt, the policy's grant_ttl): the step running then "
                         "was killed, or the next one never started; nothing had run -> the grant is released; the "
                         "command had run -> rolled back if --rollback was given (outcome rolled_back), else outcome "
                         "failed"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C): the running step was killed, nothing further ran"),
)

DEFAULT_TIMEOUT = 600.0
DEFAULT_WAIT = 600.0
DEFAULT_VERIFY_INTERVAL = 5.0
#: after SIGTERM to a timed-out step's process group, this long before SIGKILL
KILL_GRACE = 2.0
#: how much of a step's output the report keeps (the end of it), in characters and lines
TAIL_CHARS = 2000
TAIL_LINES = 20
#: after a step's process exits, how long its output may still drain (a grandchild may hold the pipe)
DRAIN_SECONDS = 1.0
#: a step under the grant must be over this long before the grant's expiresAt (clock skew between this host
#: and the store's, the outcome's write); the kill grace comes on top: a step killed at its limit may live
#: that long after its SIGTERM
GRANT_MARGIN = 1.0


class StoreError(RuntimeError):
    """The port could not read or write governance: the run stops (fail closed)."""


# --- what to run -----------------------------------------------------------------------------------


def split_command(text: str, what: str) -> tuple[str, ...]:
    """A --check/--backup/--verify/--rollback string as argv (shlex rules, no shell)."""
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise InvalidInput(f"{what} {text!r} cannot be split into words: {exc}") from None
    if not argv:
        raise InvalidInput(f"{what} is empty: give the command to run, e.g. {what} \"curl -fsS http://…/health\"")
    return argv


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_seconds(text: str, what: str = "duration") -> float:
    """'30s', '1.5s', '500ms', '5m', '1h' or a bare number of seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise InvalidInput(f"{what} {text!r} is not a duration: use e.g. 500ms, 30s, 1.5s, 5m or 1h")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return value


@dataclass(frozen=True)
class RunPlan:
    command_type: str
    command: tuple[str, ...]
    service: str | None = None
    agent: str | None = None
    confidence: float | None = None
    action_class: str | None = None
    wait: float = DEFAULT_WAIT                     # seconds for a human; 0: do not queue a request
    checks: tuple[tuple[str, ...], ...] = ()
    backup: tuple[str, ...] | None = None
    verify: tuple[str, ...] | None = None
    verify_checks: int = 1
    verify_interval: float = DEFAULT_VERIFY_INTERVAL
    rollback: tuple[str, ...] | None = None
    timeout: float = DEFAULT_TIMEOUT

    def steps(self) -> list[tuple[str, tuple[str, ...]]]:
        """(step name, argv) in the order they would run when nothing fails (the rollback last)."""
        out: list[tuple[str, tuple[str, ...]]] = [("check", c) for c in self.checks]
        if self.backup:
            out.append(("backup", self.backup))
        out.append(("command", self.command))
        if self.verify:
            out += [("verify", self.verify)] * self.verify_checks
        if self.rollback:
            out.append(("rollback", self.rollback))
        return out

    def problems(self) -> list[str]:
        """Why this plan cannot run, before anything is asked: bad numbers, commands missing or not executable."""
        found: list[str] = []
        if not self.command:
            found.append("no command given: put it after --, e.g. govcon run restart_service -- systemctl restart api")
        if self.timeout <= 0:
            found.append(f"--timeout must be positive, not {self.timeout:g}s")
        if self.wait < 0:
            found.append(f"--wait must not be negative, not {self.wait:g}s")
        if self.verify_checks < 1:
            found.append(f"--verify-checks must be at least 1, not {self.verify_checks}")
        if self.verify is not None and self.verify_interval <= 0:
            found.append(f"--verify-interval must be positive (it also bounds each verify), not "
                         f"{self.verify_interval:g}s")
        if self.confidence is not None and not 0.0 <= self.confidence <= 1.0:
            found.append(f"--confidence {self.confidence:g} is outside 0..1")
        seen: set[tuple[str, str]] = set()
        for name, argv in self.steps():
            if not argv or (name, argv[0]) in seen:
                continue
            seen.add((name, argv[0]))
            why = _not_runnable(argv[0])
            if why:
                found.append(f"{'the command' if name == 'command' else '--' + name} {argv[0]!r}: {why}")
        return found


def _not_runnable(program: str) -> str | None:
    if shutil.which(program) is not None:
        return None
    if os.sep in program:
        if not os.path.exists(program):
            return "no such file"
        if os.path.isdir(program):
            return "is a directory, not a program"
        return "is not executable (chmod +x it, or name its interpreter: sh SCRIPT)"
    return "not found on PATH"


# --- the port: how the runner reaches governance ---------------------------------------------------


class ActionsPort(Protocol):
    """What the runner needs from governance. Methods raise StoreError (or anything else: treated the
    same) when the store cannot be reached."""

    def require_reporter(self) -> None: ...
    def rollback_mandatory(self, command_type: str, action_class: str | None) -> bool: ...
    def decide(self, plan: RunPlan, *, request: bool, take_grant: bool) -> dict[str, Any]: ...
    def wait(self, request_id: str, timeout: float) -> dict[str, Any]: ...
    def stop_reason(self) -> str | None: ...
    def report_outcome(self, grant_id: str, plan: RunPlan, status: str) -> None: ...
    def release(self, grant_id: str, reason: str) -> None: ...
    def escalate(self, grant_id: str, plan: RunPlan, title: str, body: str, details: dict[str, Any]) -> None: ...
    def attach_report(self, grant_id: str, report: dict[str, Any]) -> None: ...
    def now(self) -> str: ...


class GovernancePort:
    """The port in-process: the Governance facade on the store (what `govcon run` uses), acting as ``actor``:
    the CLI's operator when embedded, the caller when the govcon service builds it for a client (socket or
    POST /api/rpc), whatever roles that caller holds (the agent role too). So the calls that name a grant
    (report_outcome, release, escalate, attach_report) act only on a grant that exists and that the actor
    holds -- it asked for it, as ``decide`` does for every run, or it is the grant's agent (engine/actions.py
    ``holds``); a human who could have decided its action request may also release it. Anything else is
    refused (NotFound, PermissionDenied) before anything is written."""

    def __init__(self, gov: Governance, actor: str) -> None:
        self.gov = gov
        self.actor = actor

    def now(self) -> str:
        return isoformat(self.gov.clock.now())

    def require_reporter(self) -> None:
        self.gov.require(self.actor, "ingest")  # outcomes are events: whoever runs must be able to report them

    def rollback_mandatory(self, command_type: str, action_class: str | None) -> bool:
        return any(p.rollback_mandatory for p in self.gov.policies.applicable(command_type, action_class))

    def decide(self, plan: RunPlan, *, request: bool, take_grant: bool) -> dict[str, Any]:
        decision = self.gov.gate.decide(plan.command_type, confidence=plan.confidence,
                                        action_class=plan.action_class, service=plan.service,
                                        agent=plan.agent or self.actor, request=request,
                                        requested_by=self.actor, take_grant=take_grant)
        return decision.to_json()

    def wait(self, request_id: str, timeout: float) -> dict[str, Any]:
        return self.gov.actions.wait(request_id, timeout)

    def stop_reason(self) -> str | None:
        from storage import state_repo
        marker = getattr(self.gov, "kill_marker", None)
        engaged = marker.engaged() if marker is not None else None
        if engaged:
            by = getattr(engaged, "by", None)
            why = getattr(engaged, "reason", None)
            return "kill switch engaged (marker file)" + (f" by {by}" if by else "") + (f": {why}" if why else "")
        with self.gov.store.read(lane="safety") as conn:
            state = state_repo.get_state(conn)
        if state is None:
            raise StoreError("the store has no governance state any more")
        if state.kill_switch_engaged:
            return f"kill switch engaged by {state.kill_switch_by}: {state.kill_switch_reason}"
        return None

    def report_outcome(self, grant_id: str, plan: RunPlan, status: str) -> None:
        # the holder only: an outcome closes the grant (and counts for breakers and half-open probes)
        self.gov.actions.require_holder(self.actor, grant_id, "report the outcome of")
        event: dict[str, Any] = {"kind": "command", "id": grant_id, "type": plan.command_type, "status": status,
                                 "autonomous": True, "at": self.now()}
        if plan.service:
            event["service"] = plan.service
        report = self.gov.ingestor.ingest_objects([event])
        if report.rejected:
            errors = "; ".join(f"{e.field}: {e.message}" for e in report.errors) or "rejected"
            raise StoreError(f"the outcome {status} for {grant_id} was refused: {errors}")

    def release(self, grant_id: str, reason: str) -> None:
        """Nothing ran: give the grant back (it still counts against the day's budget), audited. Only a grant
        the actor holds, or one whose action request the actor could have decided."""
        self.gov.actions.release(self.actor, grant_id, reason, holder_only=True)

    def escalate(self, grant_id: str, plan: RunPlan, title: str, body: str, details: dict[str, Any]) -> None:
        """A critical alert through the outbox, in one transaction with its audit entry (only for a grant the
        actor holds); then one delivery attempt at once (a one-shot CLI may have no scheduler; the outbox's
        claims prevent a double send)."""
        self.gov.actions.escalate(self.actor, grant_id, title, body, details)
        try:
            self.gov.notifier.deliver_due()
        except Exception:  # the outbox keeps it; the scheduler's delivery job sends it
            pass

    def attach_report(self, grant_id: str, report: dict[str, Any]) -> None:
        self.gov.actions.attach_report(self.actor, grant_id, report)


# --- running one step ----------------------------------------------------------------------------


@dataclass
class StepResult:
    name: str
    argv: tuple[str, ...]
    exit_code: int | None = None
    duration: float = 0.0
    timed_out: bool = False
    error: str | None = None
    tail: str = ""
    started_at: str | None = None
    n: int | None = None
    grant_cap: float | None = None   # its time limit, when the grant's expiry cut it short of the step's own
    grant_expired: bool = False      # killed at that limit: the grant's time ran out while it ran

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "command": redact(shlex.join(self.argv)),
                               "exitCode": self.exit_code, "durationMs": round(self.duration * 1000),
                               "timedOut": self.timed_out, "startedAt": self.started_at,
                               "outputTail": redact(self.tail)}
        if self.n is not None:
            doc["n"] = self.n
        if self.grant_cap is not None:
            doc["grantCapMs"] = round(self.grant_cap * 1000)
        if self.grant_expired:
            doc["grantExpired"] = True
        if self.error:
            doc["error"] = redact(self.error)
        return doc


class _Tail:
    """The end of a step's output: at most TAIL_LINES lines and TAIL_CHARS characters."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)

    def add(self, line: str) -> None:
        self.lines.append(line[-TAIL_CHARS:])

    def text(self) -> str:
        return "".join(self.lines)[-TAIL_CHARS:]


def run_process(name: str, argv: tuple[str, ...], timeout: float, *,
                on_line: Callable[[str, str], None] | None = None, kill_grace: float = KILL_GRACE) -> StepResult:
    """Run argv (no shell) in a process group of its own, stdout and stderr merged; past ``timeout``
    the whole group gets SIGTERM, then SIGKILL after ``kill_grace``."""
    result = StepResult(name, argv)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        result.error = f"cannot start {argv[0]}: {exc.strerror or exc}"
        result.duration = time.monotonic() - started
        return result
    tail = _Tail()

    def read() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            tail.add(line)
            if on_line is not None:
                try:
                    on_line(name, line)
                except Exception:
                    pass

    reader = threading.Thread(target=read, name=f"govcon-run-{name}", daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        result.timed_out = True
        _kill_group(proc, kill_grace)
    except BaseException:  # Ctrl-C: the step dies with us
        _kill_group(proc, 0.0)
        raise
    finally:
        result.duration = time.monotonic() - started
    reader.join(DRAIN_SECONDS)
    result.exit_code = proc.returncode
    result.tail = tail.text()
    return result


def _kill_group(proc: subprocess.Popen, grace: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:  # the leader is gone; make sure nothing of its group lingers
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            return
        except subprocess.TimeoutExpired:
            continue


# --- the run -------------------------------------------------------------------------------------


@dataclass
class RunResult:
    exit_code: int
    result: str                      # a word: succeeded, denied, check_failed, rolled_back, ...
    message: str                     # one line for the operator
    decision: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    grant_id: str | None = None
    request_id: str | None = None
    problems: list[str] = field(default_factory=list)
    unreported: list[str] = field(default_factory=list)   # what could not be written to the store

    def to_json(self) -> dict[str, Any]:
        return {"exitCode": self.exit_code, "result": self.result, "message": redact(self.message),
                "grantId": self.grant_id, "requestId": self.request_id, "decision": self.decision,
                "report": self.report, "problems": self.problems, "unreported": self.unreported}


class _Stop(Exception):
    """Stop before the next step (the kill switch, or a store that cannot be read)."""

    def __init__(self, code: int, result: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.result, self.reason = code, result, reason


class _GrantOut(_Stop):
    """The grant's time ran out (or too little of it is left to start the next step)."""

    def __init__(self, reason: str) -> None:
        super().__init__(EXIT_GRANT_EXPIRED, "grant_expired", reason)


Progress = Callable[[str], None]


class Runner:
    def __init__(self, port: ActionsPort, *, progress: Progress | None = None,
                 on_output: Callable[[str, str], None] | None = None, kill_grace: float = KILL_GRACE,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.port = port
        self.progress = progress or (lambda _line: None)
        self.on_output = on_output
        self.kill_grace = kill_grace
        self.sleep = sleep

    # --- before anything is asked ---------------------------------------------------------------

    def _refuse(self, plan: RunPlan, *, dry: bool) -> RunResult | None:
        problems = plan.problems()
        if problems:
            return RunResult(EXIT_USAGE, "usage", "; ".join(problems) + " — nothing asked, no grant taken",
                             problems=problems)
        try:
            if not dry:
                self.port.require_reporter()
            mandatory = plan.rollback is None and self.port.rollback_mandatory(plan.command_type, plan.action_class)
        except Exception as exc:
            if isinstance(exc, GovconError):
                return RunResult(exc.exit_code, "refused", str(exc))
            return RunResult(EXIT_STORE, "store_error", f"cannot read governance: {_brief(exc)}")
        if mandatory:
            why = (f"the policy for {plan.command_type} makes a rollback mandatory: give --rollback CMD "
                   "(nothing asked, no grant taken)")
            return RunResult(EXIT_USAGE, "usage", why, problems=[why])
        return None

    def dry_run(self, plan: RunPlan) -> RunResult:
        """Ask the gate without taking a grant and say what would run."""
        refused = self._refuse(plan, dry=True)
        if refused is not None:
            return refused
        try:
            decision = self.port.decide(plan, request=False, take_grant=False)
        except Exception as exc:
            return RunResult(EXIT_STORE, "store_error", f"cannot ask the gate: {_brief(exc)}")
        if decision.get("rollbackMandatory") and plan.rollback is None:
            why = f"policy {decision.get('policy')} makes a rollback mandatory: give --rollback CMD"
            return RunResult(EXIT_USAGE, "usage", why, decision=decision, problems=[why])
        code = {Decision.ALLOW: EXIT_SUCCEEDED, Decision.NEEDS_APPROVAL: EXIT_NEEDS_APPROVAL}.get(decision["decision"],
                                                                                         EXIT_DENIED)
        steps = [{"name": n, "command": redact(shlex.join(a)),
                  **({"timeout": f"{plan.verify_interval:g}s", "every": f"{plan.verify_interval:g}s"} if n == "verify"
                     else {"timeout": f"{plan.timeout:g}s"}),
                  **({"when": "only if the command or a verify fails"} if n == "rollback" else {})}
                 for n, a in plan.steps()]
        would = {Decision.ALLOW: "would run (no grant taken)",
                 Decision.NEEDS_APPROVAL: f"would need a human's approval (a run waits {plan.wait:g}s for one)"
                 if plan.wait > 0 else "would need a human's approval (and --wait 0 queues no request)",
                 }.get(decision["decision"], "would be denied")
        report = {"dryRun": True, "commandType": plan.command_type, "service": plan.service, "agent": plan.agent,
                  "steps": steps}
        return RunResult(code, "dry_run", f"dry run: {decision['decision']}: {decision['reason']} — {would}",
                         decision=decision, report=report)

    # --- the governed run -----------------------------------------------------------------------

    def run(self, plan: RunPlan) -> RunResult:
        refused = self._refuse(plan, dry=False)
        if refused is not None:
            return refused
        started = time.monotonic()
        report: dict[str, Any] = {"runner": "govcon run", "commandType": plan.command_type, "service": plan.service,
                                  "agent": plan.agent, "confidence": plan.confidence, "startedAt": self.port.now(),
                                  "steps": [], "plan": [{"name": n, "command": redact(shlex.join(a))}
                                                        for n, a in plan.steps()]}
        try:
            granted = self._ask(plan, report)
        except Exception as exc:  # a port that cannot reach governance: nothing was granted that we know of
            return RunResult(EXIT_STORE, "store_error", f"cannot ask the gate: {_brief(exc)}")
        if isinstance(granted, RunResult):
            return granted
        grant_id = granted
        report["grantId"] = grant_id
        expires_at = _parse_time(report.get("grantExpiresAt"))
        if expires_at is None:  # fail closed: a grant whose end is unknown cannot bound the steps under it
            why = (f"the gate issued grant {grant_id} without a readable expiresAt "
                   f"({report.get('grantExpiresAt')!r}): not running, as every step under a grant must end before "
                   "the grant expires")
            self._release_quietly(grant_id, why)
            return RunResult(EXIT_DENIED, "denied", why, decision=report.get("decision"), grant_id=grant_id,
                             request_id=report.get("requestId"))
        state = _RunState(plan, grant_id, report, expires_at=expires_at)
        self._announce_grant(state)
        try:
            self._execute(state)
        except _Stop as stop:
            if isinstance(stop, _GrantOut):
                state.grant_ran_out = True
            state.stop(stop.code, stop.result, stop.reason)
        except KeyboardInterrupt:
            state.stop(EXIT_INTERRUPTED, "interrupted", "interrupted (Ctrl-C) during " + (state.current or "the run"))
        return self._finish(state, started)

    def _ask(self, plan: RunPlan, report: dict[str, Any]) -> str | RunResult:
        """The grant id, or the result that ends the run here."""
        queue = plan.wait > 0
        decision = self.port.decide(plan, request=queue, take_grant=True)
        report["decision"] = {k: decision.get(k) for k in ("decision", "reason", "policy", "phase", "grantId",
                                                            "requestId", "expiresAt")}
        report["agent"] = decision.get("agent") or plan.agent
        verdict = decision["decision"]
        self.progress(f"gate: {verdict}: {decision['reason']}")
        if verdict == Decision.ALLOW and decision.get("grantId"):
            if decision.get("rollbackMandatory") and plan.rollback is None:  # a policy loaded since the check
                self._release_quietly(decision["grantId"], "rollback mandatory but not given")
                why = f"policy {decision.get('policy')} makes a rollback mandatory: give --rollback CMD"
                return RunResult(EXIT_USAGE, "usage", why, decision=decision, problems=[why])
            report["grantExpiresAt"] = decision.get("expiresAt")
            return decision["grantId"]
        if verdict == Decision.ALLOW:  # an allow without a grant: a gate that does not keep the books
            return RunResult(EXIT_DENIED, "denied", "the gate allowed without issuing a grant; not running",
                             decision=decision)
        if verdict != Decision.NEEDS_APPROVAL:
            return RunResult(EXIT_DENIED, "denied", f"denied: {decision['reason']}", decision=decision)
        request_id = decision.get("requestId")
        if not queue:
            return RunResult(EXIT_NEEDS_APPROVAL, "needs_approval",
                             f"needs approval: {decision['reason']} (with --wait 0 no request is queued; give "
                             "--wait D to queue one and wait for a human)", decision=decision)
        if request_id is None:
            why = decision.get("requestError") or "no action request was queued"
            return RunResult(EXIT_NEEDS_APPROVAL, "needs_approval", f"needs approval: {decision['reason']}; {why}",
                             decision=decision)
        self.progress(f"action request {request_id} queued; waiting up to {plan.wait:g}s for a human "
                      f"(govcon actions approve {request_id})")
        try:
            from engine.actions import wait_for_decision  # (SQLAlchemy: only once a human must decide)
            shown = wait_for_decision(self.port.wait, request_id, plan.wait)
        except Exception as exc:
            return RunResult(EXIT_STORE, "store_error", f"cannot read the action request {request_id}: {_brief(exc)}",
                             decision=decision, request_id=request_id)
        request = shown.get("request") or {}
        status = request.get("status")
        if status == RequestStatus.APPROVED and (shown.get("grant") or {}).get("grantId"):
            report["approvedBy"] = request.get("decidedBy")
            report["requestId"] = request_id
            self.progress(f"approved by {request.get('decidedBy')}: grant {shown['grant']['grantId']}")
            report["grantExpiresAt"] = shown["grant"].get("expiresAt")
            return shown["grant"]["grantId"]
        if status == RequestStatus.REJECTED:
            return RunResult(EXIT_DENIED, "rejected", f"action request {request_id} rejected by "
                             f"{request.get('decidedBy')}: {request.get('note')}", decision=decision,
                             request_id=request_id)
        if status == RequestStatus.EXPIRED:
            return RunResult(EXIT_DENIED, "expired", f"action request {request_id} expired undecided (it counts as "
                             "rejected)", decision=decision, request_id=request_id)
        return RunResult(EXIT_NEEDS_APPROVAL, "undecided", f"action request {request_id} still undecided after "
                         f"{plan.wait:g}s; not running (if it is approved later, its grant expires unused)",
                         decision=decision, request_id=request_id)

    def _announce_grant(self, state: _RunState) -> None:
        """Say when the grant ends, and that a --timeout longer than what is left of it is cut short."""
        try:
            left, usable = self._grant_left(state)
        except Exception:  # the first checkpoint says so, failing closed
            return
        note = f"grant {state.grant_id} expires at {isoformat(state.expires_at)} (in {max(left, 0):.1f}s)"
        if usable < state.plan.timeout:
            note += (f": the steps under it are cut short to end {GRANT_MARGIN + self.kill_grace:g}s before then "
                     f"(--timeout {state.plan.timeout:g}s is longer than what is left)")
        self.progress(note)

    def _grant_left(self, state: _RunState) -> tuple[float, float]:
        """(seconds until the grant's expiresAt, seconds a step may still run under it), by the port's clock:
        the store's (the gate counts the grant in flight by that clock, and tests move it)."""
        now = _parse_time(self.port.now())
        if now is None or state.expires_at is None:
            raise StoreError("the governance clock cannot be read")
        left = (state.expires_at - now).total_seconds()
        return left, left - GRANT_MARGIN - self.kill_grace

    def _checkpoint(self, state: _RunState, before: str, *, under_grant: bool = True,
                    needs: float = 0.0) -> float | None:
        """Between steps: stop when the kill switch is engaged or the store cannot say whether it is; under the
        grant, stop as well when no more than ``needs`` seconds of it are left for the next step to run and end
        in. Returns those seconds (None for a step not bounded by the grant)."""
        try:
            reason = self.port.stop_reason()
            left = self._grant_left(state) if under_grant else None
        except Exception as exc:
            raise _Stop(EXIT_STORE, "store_error", f"the store cannot be read before {before}, so the run "
                                                   f"stops (failing closed): {_brief(exc)}") from None
        if reason:
            raise _Stop(EXIT_KILL_SWITCH, "kill_switch", f"stopped before {before}: {reason}")
        if left is not None and left[1] <= needs:
            until, _usable = left
            expiry = isoformat(state.expires_at)
            raise _GrantOut(f"the grant's time ran out before {before}: " + (
                f"it expired at {expiry}" if until <= 0 else
                f"it expires at {expiry}, in {until:.1f}s, too little to start {before} and have it over "
                f"{GRANT_MARGIN + self.kill_grace:g}s before then"))
        state.current = before
        return left[1] if left is not None else None

    def _step(self, state: _RunState, name: str, argv: tuple[str, ...], timeout: float, n: int | None = None,
              label: str | None = None, *, under_grant: bool = True) -> StepResult:
        """One step; under the grant its time limit is cut to what is left of the grant (GRANT_MARGIN and the
        kill grace kept free), so that it is over -- killed if it must be -- before the grant expires."""
        label = label or name
        left = self._checkpoint(state, label, under_grant=under_grant)
        limit = timeout if left is None or left >= timeout else left
        started_at = self.port.now()
        result = run_process(name, argv, limit, on_line=self.on_output, kill_grace=self.kill_grace)
        result.started_at, result.n = started_at, n
        if limit < timeout:
            result.grant_cap = limit
            result.grant_expired = result.timed_out
        state.steps.append(result)
        state.report["steps"].append(result.to_json())
        if result.grant_expired:
            how = f"killed after {limit:.1f}s: the grant's time ran out (it expires at {isoformat(state.expires_at)})"
        elif result.timed_out:
            how = f"timed out after {limit:g}s (killed)"
        else:
            how = result.error or f"exit {result.exit_code}"
        self.progress(f"{label}: {redact(shlex.join(argv))} -> {how} ({round(result.duration * 1000)} ms)")
        return result

    def _killed_at_expiry(self, state: _RunState, what: str, step: StepResult) -> str:
        state.grant_ran_out = True
        own = (f"--verify-interval {state.plan.verify_interval:g}s" if step.name == "verify"
               else f"--timeout {state.plan.timeout:g}s")
        return (f"the grant's time ran out during {what}: killed after {step.grant_cap or 0:.1f}s (not at its {own}), "
                f"to be over before the grant expires at {isoformat(state.expires_at)}")

    def _execute(self, state: _RunState) -> None:
        plan = state.plan
        total = len(plan.checks)
        for i, check in enumerate(plan.checks, start=1):
            result = self._step(state, "check", check, plan.timeout, i, f"check {i}/{total}")
            if result.grant_expired:
                raise _GrantOut(self._killed_at_expiry(state, f"check {i}/{total}", result))
            if not result.ok:
                state.end(EXIT_CHECK_FAILED, "check_failed", f"check {i}/{total} failed: nothing ran")
                return
        if plan.backup:
            backup = self._step(state, "backup", plan.backup, plan.timeout)
            if backup.grant_expired:
                raise _GrantOut(self._killed_at_expiry(state, "the backup", backup))
            if not backup.ok:
                state.end(EXIT_BACKUP_FAILED, "backup_failed", "the backup failed: the command never ran")
                return
        command = self._step(state, "command", plan.command, plan.timeout)
        state.command_ran = True
        if not command.ok:
            failure: tuple[int | None, str, str]
            if command.grant_expired:
                why = self._killed_at_expiry(state, "the command", command)
                state.stopped_by = why
                failure = (EXIT_GRANT_EXPIRED, "grant_expired", why)
            elif command.timed_out:
                failure = (EXIT_TIMEOUT, "timed_out", f"the command ran past {plan.timeout:g}s and was killed")
            else:
                failure = (None, "command_failed", "the command failed (" + (command.error or
                                                                             f"exit {command.exit_code}") + ")")
            self._roll_back(state, *failure, rolled_code=EXIT_COMMAND_ROLLED_BACK, bare_code=EXIT_COMMAND_FAILED)
            return
        if plan.verify:
            for i in range(1, plan.verify_checks + 1):
                label = f"verify {i}/{plan.verify_checks}"
                try:
                    if i > 1:
                        # the wait and the verify after it must both fit in what is left of the grant
                        self._checkpoint(state, label, needs=plan.verify_interval)
                        self.sleep(plan.verify_interval)
                    verify = self._step(state, "verify", plan.verify, plan.verify_interval, i, label)
                except _GrantOut as out:  # verification cannot finish under the grant: as a verify that hung
                    state.grant_ran_out, state.stopped_by = True, out.reason
                    self._roll_back(state, EXIT_GRANT_EXPIRED, "grant_expired",
                                    f"{out.reason}: the command ran but its verification could not finish",
                                    rolled_code=EXIT_VERIFY_ROLLED_BACK, bare_code=EXIT_VERIFY_FAILED)
                    return
                if verify.grant_expired:
                    why = self._killed_at_expiry(state, label, verify)
                    state.stopped_by = why
                    self._roll_back(state, EXIT_GRANT_EXPIRED, "grant_expired",
                                    f"{why}: the command ran but its verification did not finish",
                                    rolled_code=EXIT_VERIFY_ROLLED_BACK, bare_code=EXIT_VERIFY_FAILED)
                    return
                if not verify.ok:
                    what = ("hung past its interval" if verify.timed_out
                            else (verify.error or f"exit {verify.exit_code}"))
                    self._roll_back(state, None, "verify_failed", f"{label} failed ({what})",
                                    rolled_code=EXIT_VERIFY_ROLLED_BACK, bare_code=EXIT_VERIFY_FAILED)
                    return
        state.end(EXIT_SUCCEEDED, "succeeded", "the command ran" + (f" and was verified {plan.verify_checks} time(s)"
                                                              if plan.verify else ""), outcome="succeeded")

    def _roll_back(self, state: _RunState, code: int | None, result: str, why: str, *, rolled_code: int,
                   bare_code: int) -> None:
        plan = state.plan
        if not plan.rollback:
            state.end(code or bare_code, result, f"{why}; no --rollback given", outcome="failed")
            return
        state.outcome = "failed"  # known from here on, whatever stops the rollback
        # The rollback is not bounded by the grant, and runs even once the grant has expired: it undoes what
        # the command (or a part of it) changed, it is not the action the grant budgets. Cutting it short or
        # skipping it at the grant's expiry would leave the system half-changed, which is worse than a
        # restore running past the grant; it keeps its own --timeout, and the kill switch still stops it.
        rollback = self._step(state, "rollback", plan.rollback, plan.timeout, under_grant=False)
        if rollback.ok:
            state.end(code or rolled_code, result, f"{why}; rolled back", outcome="rolled_back")
            return
        how = "timed out" if rollback.timed_out else (rollback.error or f"exit {rollback.exit_code}")
        state.end(EXIT_ROLLBACK_FAILED, "rollback_failed", f"{why}; the ROLLBACK FAILED ({how}): escalated",
                  outcome="failed")
        state.escalate = True

    # --- reporting --------------------------------------------------------------------------------

    def _finish(self, state: _RunState, started: float) -> RunResult:
        """Report what is known, escalate, attach the report; each write tried on its own, so a store that
        went away loses only what it must (the grant then expires by itself)."""
        plan, grant_id, report = state.plan, state.grant_id, state.report
        report.update({"finishedAt": _safe_now(self.port), "durationMs": round((time.monotonic() - started) * 1000),
                       "result": state.result, "exitCode": state.code, "message": redact(state.message),
                       "outcome": state.outcome or ("not_run" if not state.command_ran else "unknown"),
                       "stoppedBy": state.stopped_by, "grantExpiresAt": isoformat(state.expires_at),
                       "grantExpired": state.grant_ran_out, "escalated": False})
        unreported: list[str] = []

        def attempt(what: str, write: Callable[[], None]) -> bool:
            try:
                write()
                return True
            except Exception as exc:
                unreported.append(f"{what}: {_brief(exc)}")
                return False

        if (outcome := state.outcome) is not None:
            attempt(f"outcome {outcome}", lambda: self.port.report_outcome(grant_id, plan, outcome))
        elif not state.command_ran:
            attempt("release of the unused grant", lambda: self.port.release(grant_id, state.message))
        if state.escalate:
            title, body, details = _escalation(state)
            report["escalated"] = attempt("escalation", lambda: self.port.escalate(grant_id, plan, title, body,
                                                                                   details))
        attempt("action report", lambda: self.port.attach_report(grant_id, report))
        code, message = state.code, state.message
        if unreported:
            if code != EXIT_ROLLBACK_FAILED:  # a failed rollback stays the louder news
                code = EXIT_STORE
            message = (f"{message}; the store could not record: {'; '.join(unreported)} — the grant {grant_id} "
                       "expires by itself")
        return RunResult(code, state.result, message, decision=report.get("decision"), report=report,
                         grant_id=grant_id, request_id=report.get("requestId"), unreported=unreported)

    def _release_quietly(self, grant_id: str, reason: str) -> None:
        try:
            self.port.release(grant_id, reason)
        except Exception:
            pass


@dataclass
class _RunState:
    plan: RunPlan
    grant_id: str
    report: dict[str, Any]
    steps: list[StepResult] = field(default_factory=list)
    code: int = EXIT_SUCCEEDED
    result: str = "succeeded"
    message: str = ""
    outcome: str | None = None       # succeeded | failed | rolled_back: what is known to report
    command_ran: bool = False
    escalate: bool = False
    stopped_by: str | None = None
    current: str | None = None
    expires_at: datetime | None = None  # the grant's expiresAt: every step but the rollback ends before it
    grant_ran_out: bool = False         # the grant's time ran out: a step was killed at it, or not started

    def end(self, code: int, result: str, message: str, *, outcome: str | None = None) -> None:
        self.code, self.result, self.message = code, result, message
        if outcome is not None:
            self.outcome = outcome

    def stop(self, code: int, result: str, reason: str) -> None:
        """Stopped before a step: the outcome stays what is known (failed once the command failed; unknown
        when the command ran but its verification did not finish)."""
        self.code, self.result, self.stopped_by = code, result, reason
        if not self.command_ran:
            self.message = f"{reason}; nothing ran"
        elif self.outcome == "failed":
            self.message = f"{reason}; the command had failed and was not rolled back"
        else:
            self.message = f"{reason}; the command ran but its verification did not finish (outcome unknown)"


def _escalation(state: _RunState) -> tuple[str, str, dict[str, Any]]:
    plan = state.plan
    on = f" on {plan.service}" if plan.service else ""
    agent = state.report.get("agent") or plan.agent or "govcon run"
    title = f"ROLLBACK FAILED: {plan.command_type}{on} by {agent} ({state.grant_id}) — human intervention required"
    lines = [f"{s.name}{' ' + str(s.n) if s.n else ''}: {redact(shlex.join(s.argv))} -> "
             + ("timed out" if s.timed_out else s.error or f"exit {s.exit_code}") for s in state.steps]
    last = state.steps[-1] if state.steps else None
    tail = redact(last.tail.strip().splitlines()[-1]) if last and last.tail.strip() else ""
    body = (f"{state.message}.\n" + "\n".join(lines) + (f"\nlast output: {tail}" if tail else "")
            + f"\nThe system may be half-changed. See: govcon actions show {state.grant_id}")
    details = {"grantId": state.grant_id, "commandType": plan.command_type, "service": plan.service,
               "agent": agent, "steps": [{"name": s.name, "exitCode": s.exit_code, "timedOut": s.timed_out}
                                         for s in state.steps]}
    return title, body, details


def _parse_time(text: Any) -> datetime | None:
    """An ISO 8601 time as the store spells it (…Z), aware; None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _safe_now(port: ActionsPort) -> str | None:
    try:
        return port.now()
    except Exception:
        return None


def _brief(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"
