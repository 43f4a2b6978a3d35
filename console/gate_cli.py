"""`govcon gate TYPE …` for scripts: its output, and a lean path through the service's socket.

Agents call `govcon gate` from shell scripts, once per action, so the whole process is on their hot path
(issue 16: ≤ 120 ms). The full CLI imports the engine, SQLAlchemy and the config machinery before it can
parse its arguments. In client mode (``GOVCON_SERVER=unix://…``) a decision needs none of that: the
service decides; this process parses its arguments, sends two frames (``hello``, then ``gate.decide``,
as console/client.py's facade sends them) and prints the answer. ``run`` takes that path for the plain
ask (TYPE with --service, --agent, --confidence, --action-class, --request, --json) and returns None for
everything else (`gate log`, --explain, --wait, --help, an argument it does not parse exactly as
argparse would, embedded mode, an https:// server), which the full CLI then handles as it always has.
Output and exit codes are the full CLI's (``print_decision`` is the one printer of both;
tests/integration/test_gate_cli_lean.py compares the two paths and checks what this one imports).

Imports here are stdlib and the light console.rpc / console.client / screens.fmt only.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # not typing's (a few milliseconds of start-up); mypy knows the name
if TYPE_CHECKING:
    from typing import Any, TextIO

ALLOW_EXIT, WAIT_EXIT, DENY_EXIT = 0, 3, 4
#: engine.gate.EXIT_CODES (DESIGN.md: 0 allow, 3 needs_approval, 4 deny): the lean path cannot import the
#: gate; test_gate_cli_lean checks the two agree
EXIT_CODES = {"allow": ALLOW_EXIT, "needs_approval": WAIT_EXIT, "deny": DENY_EXIT}

_FLAGS = {"--request": "request", "--json": "json"}
_OPTIONS = {"--service": "service", "--agent": "agent", "--confidence": "confidence",
            "--action-class": "action_class"}


def _clean(value: Any, keep: str = "") -> str:
    """screens.fmt.clean (the one rule for control characters), imported only when there is one to escape:
    screens.fmt imports datetime and typing."""
    text = value if isinstance(value, str) else str(value)
    printable = text
    for c in keep:
        printable = printable.replace(c, "")
    if printable.isprintable():  # every character printable or kept: clean would return it unchanged
        return text
    from screens.fmt import clean
    return clean(text, keep=keep)


def print_decision(doc: dict[str, Any], code: int, out: TextIO | _Clean, *, as_json: bool) -> int:
    """A gate answer as `govcon gate` prints it (``out`` escapes control characters, as the CLI's does)."""
    if as_json:
        json.dump(doc, out, indent=2, sort_keys=False, default=str)
        out.write("\n")
        return code
    out.write(f"{doc['decision']}: {_clean(doc['reason'])}\n")
    if doc.get("grantId"):
        out.write(f"grant {doc['grantId']} expires {doc.get('expiresAt')}: report the outcome as a command event "
                  f"with id {doc['grantId']}\n")
    if doc.get("requestId") and code == WAIT_EXIT:
        out.write(f"action request {doc['requestId']} queued for approval (expires {doc.get('requestExpiresAt')}): "
                  f"govcon actions approve {doc['requestId']}\n")
    if doc.get("requestError"):
        out.write(f"warning: {_clean(doc['requestError'])}\n")
    return code


def deny_doc(command_type: str, reason: str) -> dict[str, Any]:
    """engine.gate.GateDecision(DENY, reason, command_type, None).to_json(): failing closed."""
    return {"decision": "deny", "reason": reason, "commandType": command_type, "phase": None}


class _Clean:
    """console.render.CleanStream without its imports: control characters escaped, newlines and tabs kept."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(_clean(text, keep="\n\t"))
        return len(text)


def parse(argv: list[str]) -> dict[str, Any] | None:
    """The arguments after ``gate`` when they are a plain ask that argparse would read the same way; else
    None (the full CLI parses them, with its own messages for what is wrong)."""
    args: dict[str, Any] = {"type": None, "service": None, "agent": None, "confidence": None,
                            "action_class": None, "request": False, "json": False}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in _FLAGS:
            args[_FLAGS[word]] = True
        elif word.startswith("--"):
            name, eq, value = word.partition("=")
            if name not in _OPTIONS:
                return None  # --wait, --explain, --help, an abbreviation, a typo: the full CLI's
            if not eq:
                i += 1
                if i == len(argv):
                    return None
                value = argv[i]
                if value.startswith("-"):
                    return None  # argparse's rules for values that look like options: its own
            args[_OPTIONS[name]] = value
        elif word.startswith("-") or args["type"] is not None:
            return None  # -h, a negative number, a second positional, "--"
        else:
            args["type"] = word
        i += 1
    if args["type"] is None or args["type"] == "log":
        return None
    if args["confidence"] is not None:
        try:
            args["confidence"] = float(args["confidence"])
        except ValueError:
            return None
    return args


def _server() -> str | None:
    """What ``console.config.load_config().server()`` answers, reading the config file only when there is
    one; None when it is not a Unix socket (or the file has something to say: the full CLI decides)."""
    explicit = os.environ.get("GOVCON_CONFIG")
    if explicit:
        path = os.path.expanduser(explicit)
    else:
        import platformdirs
        path = os.path.join(platformdirs.user_config_dir("govcon"), "config.toml")
    if os.path.exists(path):
        return None  # its schema check, its `server`, its errors: the full CLI's
    value = os.environ.get("GOVCON_SERVER")
    return value if value and value.startswith("unix://") else None


def run(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int | None:
    """``argv``: the words after ``govcon``. The exit code, or None when the full CLI must handle it."""
    if not argv or argv[0] != "gate":
        return None
    args = parse(argv[1:])
    if args is None:
        return None
    server = _server()
    if server is None:
        return None
    clean_out = _Clean(out or sys.stdout)
    clean_err = _Clean(err or sys.stderr)
    from console.client import ServiceUnavailable, service_timeout, transport_for
    from console.rpc import decode, encode
    command_type = args["type"]
    try:
        timeout = service_timeout()  # a stopped or hung service: deny after it, never wait forever
        transport = transport_for(server, os.environ.get("GOVCON_TOKEN") or None)
        hello = transport.request({"m": "hello", "a": [], "k": {}}, timeout=timeout)
        if "e" in hello:
            raise ServiceUnavailable(str(hello["e"].get("message")))
        operator = decode(hello.get("r"))["operator"]
    except Exception as exc:  # as the full CLI: a service we cannot reach allows nothing
        return print_decision(deny_doc(command_type, f"store unreachable, failing closed: {exc}"), DENY_EXIT,
                              clean_out, as_json=args["json"])
    kwargs = {"confidence": args["confidence"], "action_class": args["action_class"], "service": args["service"],
              "agent": args["agent"] or operator, "request": args["request"], "requested_by": operator}
    try:
        try:
            answer = transport.request({"m": "gate.decide", "a": encode([command_type]), "k": encode(kwargs)},
                                       timeout=timeout)
        except ServiceUnavailable as exc:
            doc = deny_doc(command_type, f"govcon service unreachable, failing closed: {exc}")
            return print_decision(doc, DENY_EXIT, clean_out, as_json=args["json"])
        finally:
            transport.close()
        if "e" in answer:  # refused (a role, a bad name …): as the full CLI prints a GovconError
            error = answer["e"]
            print(f"govcon: {error.get('message', 'the govcon service refused the call')}", file=clean_err)
            return _exit_code(error)
        decision = answer.get("r")
        if not (isinstance(decision, dict) and decision.get("$dc") == "engine.gate:GateDecision"):
            print(f"govcon: the service sent an object of an unexpected type {str(decision)[:80]!r}",
                  file=clean_err)
            return 1
        fields = decode(decision["f"])
        doc = {"decision": fields["decision"], "reason": fields["reason"], "commandType": fields["command_type"],
               "phase": fields["phase"], **(fields.get("extra") or {})}
        return print_decision(doc, EXIT_CODES[doc["decision"]], clean_out, as_json=args["json"])
    except BrokenPipeError:  # `govcon gate … | head`
        sys.stderr.close()
        return 0


def _exit_code(error: dict[str, Any]) -> int:
    """The exit code the full CLI gives the error the service named (console/client.py rebuilds its class;
    a class's code is what the service sent for it)."""
    if error.get("type") in ("StoreUnavailable", "BackupNotSupported", "FileExistsError"):
        return 1
    try:
        return int(error.get("exitCode") or 1)
    except (TypeError, ValueError):
        return 1
