"""`govcon agents list` and `govcon agents show NAME` (registered by console/cli.py): agents and their
leases, as GET /api/agents and /api/agents/{name} show them."""

from __future__ import annotations

from typing import Any, TextIO


def register(command):
    """``command(name, handler, help)`` adds a subcommand. Returns the `agents` subparsers, so that more
    agent subcommands (calibration) can be added beside list and show."""
    sp = command("agents", cmd_agents, "agents and their leases: live or lapsed, last beat, grants in flight")
    asub = sp.add_subparsers(dest="agents_command", metavar="list|show|calibration")
    al = asub.add_parser("list", help="every agent that has sent a heartbeat")
    al.add_argument("--json", action="store_true")
    ash = asub.add_parser("show", help="one agent: its lease, last beat, token and grants in flight")
    ash.add_argument("name")
    ash.add_argument("--json", action="store_true")
    ac = asub.add_parser("calibration", help="stated confidence against observed success (bins, Brier score, "
                                             "ECE) per agent and command type, from finished grants")
    ac.add_argument("name", nargs="?", help="one agent (default: every agent with outcomes)")
    ac.add_argument("--all-types", action="store_true", help="one calibration per agent, all its types together")
    ac.add_argument("--json", action="store_true")
    sp.set_defaults(agents_command="list")
    return asub


def cmd_agents(ctx) -> int:
    a = ctx.args
    if a.agents_command == "calibration":
        calibrations = ctx.gov.calibration.report(a.name, by_type=not a.all_types)
        if a.json:
            ctx.emit_json({"agent": a.name, "calibrations": [c.to_json() for c in calibrations]})
        else:
            _print_calibrations(calibrations, a.name, ctx.out)
        return 0
    if a.agents_command == "show":
        doc = ctx.gov.agents.show(a.name)
        ctx.emit_json(doc) if a.json else _print_agent(doc, ctx.out)
        return 0
    doc = ctx.gov.agents.list()
    if a.json:
        ctx.emit_json(doc)
        return 0
    _print_agents(doc, ctx.out)
    return 0


def _print_agents(doc: dict[str, Any], out: TextIO) -> None:
    agents = doc["agents"]
    if not agents:
        out.write("no agents yet: an agent appears with its first heartbeat (POST /api/agents/NAME/heartbeat)\n")
        return
    width = max(len("AGENT"), *(len(x["name"]) for x in agents))
    out.write(f"{'AGENT':<{width}}  {'LEASE':<7} {'UNTIL / LAPSED AT':<26} {'LAST BEAT':<26} {'IN FLIGHT':>9}\n")
    for x in agents:
        out.write(f"{x['name']:<{width}}  {'live' if x['live'] else 'LAPSED':<7} {x['leaseExpiresAt']:<26} "
                  f"{x['lastBeatAt']:<26} {x['inFlight']:>9}\n")
    if doc.get("requireLease"):
        out.write("[agents] require_lease = true: an agent that has never beaten needs approval too\n")


def _print_agent(doc: dict[str, Any], out: TextIO) -> None:
    def line(label: str, value: Any) -> None:
        out.write(f"{label:<14}{value}\n")
    line("Agent", doc["name"])
    line("Lease", f"live until {doc['leaseExpiresAt']}" if doc["live"] else f"LAPSED at {doc['leaseExpiresAt']}")
    line("Last beat", f"{doc['lastBeatAt']} (ttl {doc['ttl']} s, {doc['beats']} beats since {doc['firstSeenAt']})")
    line("Token", f"{doc['lastTokenId'] or '(id unknown)'} of {doc['lastOperator']}")
    line("In flight", doc["inFlight"])
    for g in doc["grantsInFlight"]:
        line("", f"{g['grantId']} {g['commandType']} (expires {g['expiresAt']})")


def _print_calibrations(calibrations, name: str | None, out: TextIO) -> None:
    if not calibrations:
        who = f"{name} has" if name else "no agent has"
        out.write(f"{who} no finished grants with a stated confidence in the last 90 days: nothing to calibrate\n")
        return
    for cal in calibrations:
        scope = f"{cal.agent} · {cal.command_type}" if cal.command_type else f"{cal.agent} · every type"
        out.write(f"{scope}: {cal.outcomes} outcome{'' if cal.outcomes == 1 else 's'}, {cal.succeeded} succeeded, "
                  f"Brier {_figure(cal.brier)}, ECE {_figure(cal.ece)}\n")
        out.write(f"  {'STATED':<9} {'N':>5} {'MEAN':>6} {'OBSERVED':>9}  (observed vs stated; "
                  f"used by calibrated policies from n={cal.min_outcomes})\n")
        for b in cal.bins:
            if not b.count:
                continue
            out.write(f"  {b.label:<9} {b.count:>5} {b.stated_mean:>6.2f} {b.observed:>9.2f}  {_bar(b.observed)}\n")


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _bar(observed: float, width: int = 20) -> str:
    filled = round(observed * width)
    return "█" * filled + "·" * (width - filled)
