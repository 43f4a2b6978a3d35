"""A/B of two `govcon serve` trees on the hot routes, in one run: POST /api/events (one event a request),
POST /api/gate (an allow that writes its grant) and POST /api/agents/{name}/heartbeat, each a short closed
loop against a fresh SQLite store per server, the two trees alternating (A B A B …) so that the machine's
load hits both alike. Latencies are the client's (tests/serve_process.py's raw HTTP/1.1 client).

Run (the baseline is another checkout, e.g. a worktree of main):
    .venv/bin/python -m tests.bench.ab_serve --baseline /work/main --seconds 5 --rounds 3
Both trees run under this venv's Python (the same dependencies); only the code differs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from engine.clock import ManualClock, isoformat
from engine.governance import Governance
from engine.tokens import TokenBook
from storage import state_repo
from storage.store import Store
from tests.serve_process import ROOT, ServeProcess, command_event, dumps, free_port, load

CLIENTS = {"events": 16, "gate": 8, "heartbeat": 8}


class TreeServer(ServeProcess):
    """ServeProcess, but `python -m console serve` run from ``root`` (its code, this venv's packages)."""

    def __init__(self, root: Path, database_url: str, workdir: Path) -> None:  # noqa: D107
        self.port = free_port()
        self.host = "127.0.0.1"
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_file, self.pid_file = workdir / "governance.log", workdir / "governance.pid"
        self.stderr_file = workdir / "serve.stderr"
        env = dict(os.environ, GOVCON_DATABASE_URL=database_url, GOVCON_CONFIG=str(workdir / "absent.toml"),
                   PYTHONPATH=str(root))
        env.pop("GOVCON_TEST_POSTGRES_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-file", str(self.log_file), "--pid-file", str(self.pid_file)],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr_file.open("wb"))


def _store(workdir: Path) -> tuple[str, str, str]:
    url = str(workdir / "governance.db")
    store = Store(url)
    clock = ManualClock(datetime.now(UTC))
    gov = Governance(store, clock)
    gov.init_store("bench")
    gov.grant_role("bench", "bot", "agent")
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    tokens = TokenBook(store, clock)
    admin, bot = tokens.create("bench", "bench").secret, tokens.create("bench", "bot").secret
    store.dispose()
    return url, admin, bot


def _run(root: Path, seconds: float) -> dict[str, tuple[float, float, float]]:
    """route -> (requests/s, p50 s, p99 s) on a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url, admin, bot = _store(workdir)
        server = TreeServer(root, url, workdir).wait_ready()
        at = isoformat(datetime.now(UTC))
        try:
            out = {}
            for route, path, token, body in (
                ("events", "/api/events", admin,
                 lambda c, n: (f"e{c}-{n}", dumps(command_event(f"e{c}-{n}", at=at)))),
                ("gate", "/api/gate", None,
                 lambda c, n: ("", b'{"commandType": "restart_service", "confidence": 0.9}')),
                ("heartbeat", "/api/agents/bot/heartbeat", bot, lambda c, n: ("", b'{"ttl": 60}')),
            ):
                result = asyncio.run(load(server.port, clients=CLIENTS[route], seconds=seconds, make_body=body,
                                          path=path, token=token))
                assert set(result.statuses) == {200}, (route, result.statuses, server.log()[-2000:])
                lat = sorted(result.latencies)
                out[route] = (result.requests / result.seconds, statistics.median(lat), lat[int(len(lat) * 0.99)])
            return out
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the other tree (e.g. a worktree of main)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    trees = {"baseline": a.baseline.resolve(), "this tree": ROOT}
    runs: dict[str, list[dict[str, tuple[float, float, float]]]] = {name: [] for name in trees}
    for i in range(a.rounds):
        for name, root in (trees.items() if i % 2 == 0 else reversed(trees.items())):
            runs[name].append(_run(root, a.seconds))
            print(f"round {i + 1} {name}: " + ", ".join(f"{r} {v[0]:,.0f}/s p99 {v[2] * 1000:.2f} ms"
                                                          for r, v in runs[name][-1].items()), flush=True)
    print(f"\nmedian of {a.rounds} rounds of {a.seconds:.0f} s (baseline {trees['baseline']}):")
    for route in CLIENTS:
        med = {name: [statistics.median(r[route][k] for r in runs[name]) for k in range(3)] for name in trees}
        b, t = med["baseline"], med["this tree"]
        print(f"  {route:<10} {CLIENTS[route]:>2} clients: baseline {b[0]:,.0f}/s p50 {b[1] * 1000:.2f} ms "
              f"p99 {b[2] * 1000:.2f} ms | this tree {t[0]:,.0f}/s p50 {t[1] * 1000:.2f} ms p99 {t[2] * 1000:.2f} ms"
              f" | throughput ratio {t[0] / b[0]:.2f}, p99 ratio {t[2] / b[2]:.2f}")


if __name__ == "__main__":
    main()
