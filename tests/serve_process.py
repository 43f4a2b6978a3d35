"""A real `govcon serve` process on 127.0.0.1 and a lean keep-alive HTTP/1.1 client for loading it
(shared by tests/integration/test_api_e2e.py and tests/bench/bench_api.py).

The client speaks raw HTTP over asyncio streams: a load generator on the same two-core machine as the
server must cost as little CPU as possible, or it measures itself.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_STARTED: list[subprocess.Popen] = []


@atexit.register
def _reap() -> None:
    """A server whose test died before stopping it (a fixture error) ends with the test process (an xdist
    worker), instead of living on against a dropped schema and loading the machine for every later test."""
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class ServeProcess:
    """``python -m console serve`` on a store URL; ``stop()`` sends SIGTERM and waits."""

    def __init__(self, database_url: str, workdir: Path, *, host: str = "127.0.0.1",
                 extra_args: tuple[str, ...] = (), config: str | None = None) -> None:
        self.port = free_port()
        self.host = host
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_file = workdir / "governance.log"
        self.pid_file = workdir / "governance.pid"
        self.stderr_file = workdir / "serve.stderr"
        config_file = workdir / ("config.toml" if config else "absent.toml")
        if config:
            config_file.write_text(config)
        env = dict(os.environ, GOVCON_DATABASE_URL=database_url, GOVCON_CONFIG=str(config_file))
        env.pop("GOVCON_TEST_POSTGRES_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console", "serve", "--host", host, "--port", str(self.port),
             "--log-file", str(self.log_file), "--pid-file", str(self.pid_file), *extra_args],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr_file.open("wb"))
        _STARTED.append(self.proc)

    def wait_ready(self, timeout: float = 90.0) -> ServeProcess:
        """Until /health answers. On a loaded 2-core machine a start takes seconds (imports, migrations
        check); a server that never answers is killed before the failure is raised (the caller's fixture
        never reaches its stop())."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"govcon serve exited {self.proc.returncode}: {self.stderr()}{self.log()}")
            try:
                if httpx.get(self.base + "/health", timeout=1.0).status_code in (200, 503):
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise AssertionError(f"govcon serve did not answer within {timeout} s: {self.stderr()}{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"govcon serve did not stop within {timeout} s of SIGTERM") from None

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def stderr(self) -> str:
        return self.stderr_file.read_text() if self.stderr_file.exists() else ""


@dataclass
class LoadResult:
    statuses: dict[int, int] = field(default_factory=dict)
    acknowledged: list[str] = field(default_factory=list)  # bodies' keys answered 2xx
    latencies: list[float] = field(default_factory=list)
    transport_errors: int = 0
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    i = lower.find(b"content-length:")
    length = int(head[i + 15:head.index(b"\r\n", i)]) if i >= 0 else 0
    body = await reader.readexactly(length)
    return status, body


def post_bytes(path: str, body: bytes, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode() + auth
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


async def load(port: int, *, clients: int, seconds: float, make_body, path: str = "/api/events",
               token: str | None = None, stop: asyncio.Event | None = None, rate: float | None = None) -> LoadResult:
    """``clients`` connections, each sending ``make_body(client, n) -> (key, bytes)`` back to back for
    ``seconds`` (or, with ``rate``, at that many requests per second over all clients, open loop);
    a connection error ends that client."""
    result = LoadResult()
    deadline = time.perf_counter() + seconds
    interval = clients / rate if rate else 0.0

    async def client(c: int) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            result.transport_errors += 1
            return
        n = 0
        next_at = time.perf_counter() + (c * interval / clients if interval else 0)
        try:
            while time.perf_counter() < deadline and not (stop and stop.is_set()):
                if interval:
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at += interval
                key, body = make_body(c, n)
                started = time.perf_counter()
                status, _ = await _exchange(reader, writer, post_bytes(path, body, token))
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    result.acknowledged.append(key)
                n += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.transport_errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def command_event(command_id: str, status: str = "succeeded", *, at: str,
                  command_type: str = "restart_service") -> dict:
    return {"kind": "command", "id": command_id, "type": command_type, "status": status, "autonomous": True,
            "at": at}


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
