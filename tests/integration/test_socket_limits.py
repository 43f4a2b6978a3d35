"""The Unix socket's limits (console/rpc_server.py SocketLimits): what a member of the socket's group can hold
of `govcon serve --socket`, whatever roles it has — connections per OS user and in all (refused at once, with an
error frame the client prints), a reserve for the kill switch, idle connections and slow frames closed, and an
operator without a role answered once per connection, with small requests only.

The first tests run the listener in this process on a real store, with limits small enough to reach (a
constructor argument); the others a real `govcon serve --socket` with its defaults, flooded by real OS users
(tests/multiuser.py: alice holds on-call, mallory no role) and by root, as the reviewer did: 1,100 idle
connections from a member without a role left the kill switch hanging and /health reset; 20 half-sent 64 MiB
frames took the service from 88 MB to 1.4 GB.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from console.client import RemoteGovernance
from console.rpc_server import RpcService, SocketLimits, SocketListener
from engine.errors import PermissionDenied
from tests import multiuser
from tests.conftest import OPERATOR

# --- a raw client: frames as console/rpc.py writes them ------------------------------------------------


def frame(doc: dict) -> bytes:
    body = json.dumps(doc).encode()
    return struct.pack(">I", len(body)) + body


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    return sock


def read_answer(sock: socket.socket, timeout: float = 5.0) -> dict | None:
    """The next frame, or None when the service closed the connection first."""
    sock.settimeout(timeout)
    data = b""
    while True:
        if len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
            return json.loads(data[4:4 + struct.unpack(">I", data[:4])[0]])
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return None
        data += chunk


def call(sock: socket.socket, method: str, *args, **kwargs) -> dict | None:
    sock.sendall(frame({"m": method, "a": list(args), "k": kwargs}))
    return read_answer(sock)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """How long until the service closes ``sock`` (reading and dropping what it sends), None if not within."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
    return None


# --- in this process, limits small enough to reach -------------------------------------------------------


@pytest.fixture
def store_url(sqlite_url):
    """The limits are the socket's, not the store's: SQLite only."""
    return sqlite_url


@pytest.fixture
def listen(gov):
    """``listen(limits)``: a SocketListener on ``gov``'s store (alice admin; root, this process, holds no role
    unless a test grants one), at a path short enough for AF_UNIX."""
    base = Path(tempfile.mkdtemp(prefix="govcon-sl-", dir="/tmp"))
    listeners: list[SocketListener] = []

    def start(limits: SocketLimits) -> Path:
        path = base / f"s{len(listeners)}.sock"
        listener = SocketListener(RpcService(gov, address=f"unix://{path}"), path, limits=limits)
        listener.start()
        listeners.append(listener)
        return path

    yield start
    for listener in listeners:
        listener.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_a_connection_that_asks_nothing_is_closed_and_idle_ones_beyond_a_users_keep(gov, listen):
    gov.grant_role(OPERATOR, "root", "on-call")
    path = listen(SocketLimits(first_request_wait=0.6, idle_timeout=0.6, idle_keep=1))
    held = connect(path)  # opened to be held: no client does that (they send at once)
    waited = closed_within(held, 10.0)
    assert waited is not None and 0.4 < waited < 3.0, waited
    busy = connect(path)  # a request now and then keeps a connection open
    for _ in range(4):
        time.sleep(0.3)
        assert call(busy, "hello")["r"]["operator"] == "root"
    older, newer = connect(path), connect(path)
    assert call(older, "hello")["r"]["operator"] == "root"
    time.sleep(0.1)
    assert call(newer, "hello")["r"]["operator"] == "root"
    busy.close()
    # idle, both: the longest idle is closed while root holds more than its idle_keep of 1; the other is kept
    assert closed_within(older, 5.0) is not None
    time.sleep(1.5)
    assert call(newer, "hello")["r"]["operator"] == "root"


def test_a_consoles_pool_survives_idleness_and_a_pooled_connection_closed_is_replaced(gov, listen):
    gov.grant_role(OPERATOR, "root", "on-call")
    # a console's pool (three connections made by three calls at once), idle past idle_timeout: kept, since
    # root holds no more than its idle_keep (console/client.py retries a closed pooled connection only once)
    path = listen(SocketLimits(idle_timeout=0.5))
    remote = RemoteGovernance(f"unix://{path}", timeout=5.0)
    try:
        remote.hello()
        barrier = threading.Barrier(3)

        def status() -> None:
            barrier.wait()
            remote.status()

        workers = [threading.Thread(target=status) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert len(remote.transport._idle) == 3
        time.sleep(1.5)
        for _ in range(3):
            assert remote.status()["killSwitch"]["engaged"] is False
    finally:
        remote.close()
    # beyond idle_keep (0 here), a pooled connection closed while idle: the next call goes out on a new one
    path = listen(SocketLimits(idle_timeout=0.5, idle_keep=0))
    remote = RemoteGovernance(f"unix://{path}", timeout=5.0)
    try:
        assert remote.hello()["operator"] == "root"
        sock = remote.transport._idle[0]
        time.sleep(1.5)
        sock.settimeout(5.0)
        assert sock.recv(1) == b""  # the service closed it
        result = remote.overrides.kill_switch("engage", "root", "idle pool test")
        assert result.changed
        assert remote.kill_switch_status()["engaged"] is True
    finally:
        remote.close()


def test_the_rest_of_a_frame_must_come_within_the_deadline(gov, listen):
    gov.grant_role(OPERATOR, "root", "on-call")
    path = listen(SocketLimits(idle_timeout=60.0, frame_deadline=0.6))
    stalled = connect(path)
    stalled.sendall(struct.pack(">I", 1000) + b'{"m": "hel')  # and nothing more
    answer = read_answer(stalled, timeout=10.0)
    assert answer is not None and "did not arrive within 0.6 s" in answer["e"]["message"]
    assert closed_within(stalled, 5.0) is not None
    trickle = connect(path)  # a byte every 0.2 s: progress does not buy time
    started = time.monotonic()
    trickle.sendall(struct.pack(">I", 1000))
    cut = None
    for _ in range(50):
        time.sleep(0.2)
        try:
            trickle.sendall(b" ")
        except OSError:
            cut = time.monotonic() - started
            break
        if select.select([trickle], [], [], 0)[0]:  # its error frame, or the end
            cut = time.monotonic() - started
            break
    assert cut is not None and cut < 3.0, cut
    assert call(connect(path), "hello")["r"]["operator"] == "root"  # the service itself is fine


def test_an_operator_without_a_role_is_answered_once_with_small_requests_only(gov, listen):
    path = listen(SocketLimits(without_role_wait=0.6))
    sock = connect(path)  # hello answers as it always did: who the caller is
    assert call(sock, "hello")["r"]["operator"] == "root"
    assert closed_within(sock, 3.0) is not None  # then the connection is closed
    answer = call(connect(path), "status")  # anything else names the role it needs, as before
    assert answer["e"]["type"] == "PermissionDenied"
    assert "reading the governance store through the govcon service needs a role (any of" in answer["e"]["message"]
    assert "root holds no role" in answer["e"]["message"]
    sock = connect(path)  # a connection that asks nothing is closed soon
    waited = closed_within(sock, 10.0)
    assert waited is not None and waited < 3.0, waited
    sock = connect(path)  # a 64 MiB frame announced: refused on its length, nothing of it read
    sock.sendall(struct.pack(">I", 64 * 1024 * 1024) + b" " * 100_000)
    answer = read_answer(sock)
    assert answer["e"]["type"] == "PermissionDenied" and answer["e"]["exitCode"] == 5
    assert "a request of 67,108,864 bytes needs a role" in answer["e"]["message"]
    assert "root holds no role" in answer["e"]["message"] and "govcon roles grant root agent" in answer["e"]["message"]
    sock = connect(path)  # JSON nested deeper than the parser goes: an error, not a failure of the service
    deep = b"[" * 60_000
    sock.sendall(struct.pack(">I", len(deep)) + deep)
    answer = read_answer(sock)
    assert answer["e"] == {"type": "ProtocolError", "message": "a frame's JSON is nested too deeply", "exitCode": 1}
    # the client: connects (hello), then each call on a new connection, the role named
    remote = RemoteGovernance(f"unix://{path}", timeout=5.0)
    try:
        assert remote.hello()["operator"] == "root"
        with pytest.raises(PermissionDenied, match="root holds no role"):
            remote.status()
        with pytest.raises(PermissionDenied, match="engaging the kill switch needs one of the roles on-call"):
            remote.overrides.kill_switch("engage", "root", "mine now")
    finally:
        remote.close()
    # granted a role, the same operator is served as any other (once the short cache of "no role" expired)
    gov.grant_role(OPERATOR, "root", "on-call")
    time.sleep(1.2)
    sock = connect(path)
    for _ in range(3):
        assert call(sock, "kill_switch_status")["r"]["engaged"] is False


def test_connections_beyond_the_caps_are_refused_and_the_kill_switch_keeps_its_reserve(gov, listen):
    gov.grant_role(OPERATOR, "root", "tech-lead")  # a role, but not one that engages the kill switch
    path = listen(SocketLimits(per_uid=6, total=3, kill_switch_reserve=2, roles_cache=0.3, no_role_cache=0.3))
    held = [connect(path) for _ in range(3)]
    for sock in held:
        assert call(sock, "hello")["r"]["operator"] == "root"
    refused = call(connect(path), "hello")  # the general pool is full; the reserve is not for tech-lead
    assert refused["e"]["type"] == "ServiceBusy"
    assert "the last 2 are kept for operators who may engage the kill switch" in refused["e"]["message"]
    assert "root holds tech-lead" in refused["e"]["message"]
    gov.grant_role(OPERATOR, "root", "on-call")
    time.sleep(0.5)
    held += [connect(path) for _ in range(2)]  # the reserve: for the kill switch's roles
    assert call(held[-1], "overrides.kill_switch", "engage", "x", "reserve test")["r"]["f"]["changed"] is True
    assert call(held[-2], "hello")["r"]["operator"] == "root"
    full = call(connect(path), "hello")
    assert full["e"]["type"] == "ServiceBusy" and "5 connections open, its limit" in full["e"]["message"]
    for sock in held[:3]:  # a connection closed gives its slot back
        sock.close()
    time.sleep(0.3)
    assert call(connect(path), "hello")["r"]["operator"] == "root"


def test_at_the_ceiling_a_caller_known_to_engage_still_gets_the_reserve(gov):
    """Connections still being identified count toward the ceiling: a flood's could fill it for a moment, and
    the incident commander, known to hold an engaging role, was refused while the reserve had room."""
    from console.rpc_server import _Admission, _Caller
    limits = SocketLimits(per_uid=6, total=3, kill_switch_reserve=2, without_role=2)
    admission = _Admission(RpcService(gov, address="unix:///nowhere"), limits)
    admission._open = limits.ceiling  # at the ceiling: the general pool full, unplaced connections besides
    admission._pools["general"] = limits.total
    until = time.monotonic() + 30
    admission._callers[1001] = _Caller(1001, "carol", frozenset({"incident-commander"}), until)
    admission._callers[1002] = _Caller(1002, "dave", frozenset({"tech-lead"}), until)
    assert admission.admit(1001) is None  # admitted: the reserve has room
    refused = admission.admit(1002)
    assert refused is not None and "connections open, its limit" in refused["message"]
    assert admission.admit(1003) is not None  # unknown yet: the ceiling holds


def test_large_requests_have_a_budget_per_user_and_in_all(gov, listen):
    gov.grant_role(OPERATOR, "root", "on-call")
    MiB = 1024 * 1024
    path = listen(SocketLimits(large_per_uid=3 * MiB, large_total=3 * MiB))
    big = b'{"m": "hello"}' + b" " * (2 * MiB)  # a 2 MiB request (JSON allows the spaces)
    first = connect(path)
    first.sendall(struct.pack(">I", len(big)) + big[:MiB])  # half of it, for now
    time.sleep(0.3)
    second = connect(path)  # another 2 MiB while the first is arriving: past root's 3 MiB, refused unread
    second.sendall(struct.pack(">I", len(big)))
    refused = read_answer(second)
    assert refused["e"]["type"] == "ServiceBusy"
    assert "root has 2 MiB of requests arriving or being answered by the govcon service, and this one of 2.0 MiB " \
           "would pass the 3 MiB one OS user may have at once" in refused["e"]["message"]
    small = call(connect(path), "hello")  # small requests do not count
    assert small["r"]["operator"] == "root"
    first.sendall(big[MiB:])  # the first completes and is answered; its bytes are given back
    assert read_answer(first)["r"]["operator"] == "root"
    third = connect(path)
    third.sendall(struct.pack(">I", len(big)) + big)
    assert read_answer(third)["r"]["operator"] == "root"
    third.sendall(struct.pack(">I", len(big)) + big)  # the same connection again: counted once at a time
    assert read_answer(third)["r"]["operator"] == "root"


def test_one_os_user_has_a_few_connections_at_most(gov, listen):
    gov.grant_role(OPERATOR, "root", "on-call")
    path = listen(SocketLimits(per_uid=4))
    held = [connect(path) for _ in range(4)]
    for sock in held:
        assert call(sock, "hello")["r"]["operator"] == "root"
    mine = call(connect(path), "hello")
    assert mine["e"]["type"] == "ServiceBusy"
    assert "root (uid 0) has 4 connections open to the govcon service, the most one OS user may have" \
        in mine["e"]["message"]
    held.pop().close()
    time.sleep(0.3)
    assert call(connect(path), "hello")["r"]["operator"] == "root"


# --- a real `govcon serve --socket`, flooded by real OS users -------------------------------------------------

#: run as the flooding user (stdlib only): ``idle`` opens N connections and sends nothing, ``bigframe`` announces a
#: 64 MiB frame on each and sends all of it but its last byte (the reviewer's flood.py and bigframe.py); both say
#: what the service answered within a few seconds, on one line of JSON, then hold the connections until stdin ends
FLOOD = textwrap.dedent("""
    import json, resource, select, socket, struct, sys, time
    path, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 64)), hard))
    socks, send_errors = [], 0
    for i in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        socks.append(s)
        if mode == "bigframe":
            size = 64 * 1024 * 1024
            try:
                s.sendall(struct.pack(">I", size))
                chunk, left = b" " * (1 << 20), size - 1
                while left:
                    k = min(left, len(chunk))
                    s.sendall(chunk[:k])
                    left -= k
            except OSError:
                send_errors += 1
    data = {s: b"" for s in socks}
    ended = set()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and len(ended) < len(socks):
        ready, _, _ = select.select([s for s in socks if s not in ended], [], [], 0.2)
        for s in ready:
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                data[s] += chunk
            else:
                ended.add(s)
    messages = {}
    for s, got in data.items():
        if len(got) >= 4 and len(got) >= 4 + struct.unpack(">I", got[:4])[0]:
            err = json.loads(got[4:4 + struct.unpack(">I", got[:4])[0]]).get("e") or {}
            key = err.get("type", "?") + ": " + err.get("message", "")
            messages[key] = messages.get(key, 0) + 1
    print(json.dumps({"connected": len(socks), "answered": sum(messages.values()), "messages": messages,
                      "open": sum(1 for s in socks if s not in ended), "send_errors": send_errors}), flush=True)
    sys.stdin.read()
""")


def proc_status(pid: int) -> dict[str, int]:
    """The service's threads, open descriptors and resident memory (KiB)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"threads": int(fields["Threads"]), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "rss_kib": int(fields["VmRSS"].split()[0])}


class Flood:
    """FLOOD as ``user`` (None: this process's user, root), against ``sock``; ``result`` once it connected."""

    def __init__(self, python: Path, user: str | None, sock: Path, n: int, mode: str) -> None:
        argv = [str(python), "-c", FLOOD, str(sock), str(n), mode]
        if user is not None:
            argv = ["runuser", "-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin", *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd="/")
        ready, _, _ = select.select([self.proc.stdout], [], [], 240)
        if not ready:
            self.stop()
            raise AssertionError("the flood did not report within 240 s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the flood failed: {self.proc.stderr.read().decode()[-2000:]}")
        self.result = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


needs_users = pytest.mark.skipif(multiuser.skip_reason() is not None, reason=multiuser.skip_reason() or "")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.integration.test_server_mode import Side, shared_dir
    users = multiuser.users()
    side = Side(shared_dir(tmp_path_factory, "socket-limits") / "svc", socket=True, group=users.group)
    for operator, role in ((users.alice, "on-call"), ("root", "ops-lead")):
        done = side.run("roles", "grant", operator, role)
        assert done.returncode == 0, done.stderr
    yield users, side
    side.serve.stop()


def engage_and_release(side, who: str) -> float:
    """The kill switch engaged over the socket by root (ops-lead), the seconds it took, then released."""
    remote = RemoteGovernance(f"unix://{side.sock}", timeout=10.0)
    try:
        started = time.monotonic()
        result = remote.overrides.kill_switch("engage", "root", f"flood test: {who}")
        took = time.monotonic() - started
        assert result.changed and result.via != "marker", result
        assert remote.kill_switch_status()["by"] == "root"
        assert remote.overrides.kill_switch("release", "root", "flood test over").changed
        return took
    finally:
        remote.close()


@needs_users
def test_a_flood_of_idle_connections_without_a_role_is_refused_and_the_kill_switch_engages(world):
    users, side = world
    pid = side.serve.proc.pid
    before = proc_status(pid)
    flood = Flood(users.python, users.mallory, side.sock, 600, "idle")
    try:
        got = flood.result
        during = proc_status(pid)
        assert got["connected"] == 600
        limits = SocketLimits()
        # refused at once, each with an error frame; what the service keeps open is bounded by one uid's share
        assert got["answered"] >= 600 - limits.per_uid, got
        for message in got["messages"]:  # its share of one OS user, or of the callers without a role, is taken
            assert message.startswith("ServiceBusy: ") and (
                "connections open to the govcon service, the most one OS user may have" in message
                or f"{users.mallory} holds no role in this store, and the govcon service is answering 16 other "
                   "callers without one" in message), message
        assert got["open"] <= limits.per_uid, got
        assert during["threads"] <= before["threads"] + limits.per_uid + 4, (before, during)
        assert during["fds"] <= before["fds"] + limits.per_uid + limits.refused_most + 8, (before, during)
        # meanwhile the kill switch engages over the socket at once, and /health answers
        assert engage_and_release(side, "mallory's idle flood") < 2.0
        health = httpx.get(side.serve.base + "/health", timeout=5.0)
        assert health.status_code in (200, 503)
        # the members with a role are served as ever, from the CLI too
        done = users.govcon(users.alice, ["status", "--json"],
                            {"GOVCON_SERVER": f"unix://{side.sock}", "GOVCON_CONFIG": "/dev/null"})
        assert done.returncode == 0, done.stderr
    finally:
        flood.stop()
    time.sleep(6.0)  # mallory's admitted connections are closed after their wait for a request
    assert proc_status(pid)["threads"] <= before["threads"] + 2


@needs_users
def test_one_os_user_cannot_take_every_connection_and_is_told_why(world):
    users, side = world
    limits = SocketLimits()
    flood = Flood(Path(sys.executable), None, side.sock, 300, "idle")  # root: a role holder, same cap
    env = {"GOVCON_SERVER": f"unix://{side.sock}", "GOVCON_CONFIG": "/dev/null"}
    try:
        got = flood.result
        assert got["connected"] == 300 and got["open"] == limits.per_uid, got
        assert got["answered"] == 300 - limits.per_uid, got
        # root's own next command is refused, and the client prints why
        from tests.integration.test_server_mode import govcon
        refused = govcon(["status"], {**side.env()})
        assert refused.returncode == 1, refused
        assert f"root (uid 0) has {limits.per_uid} connections open to the govcon service, the most one OS user " \
               "may have" in refused.stderr
        # another operator is not affected: alice (on-call) engages the kill switch from the CLI
        started = time.monotonic()
        done = users.govcon(users.alice, ["kill-switch", "engage", "--reason", "root's flood"], env)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 30.0
    finally:
        flood.stop()
    time.sleep(0.5)
    status = json.loads(side.run("status", "--json").stdout)
    assert status["killSwitch"]["by"] == users.alice
    assert side.run("kill-switch", "release", "--reason", "over").returncode == 0


@needs_users
def test_half_sent_64_mib_frames_from_a_member_without_a_role_cost_no_memory(world):
    users, side = world
    pid = side.serve.proc.pid
    before = proc_status(pid)
    flood = Flood(users.python, users.mallory, side.sock, 8, "bigframe")
    try:
        got = flood.result
        during = proc_status(pid)
        assert got["connected"] == 8
        # refused on the frame's length, nothing of it kept: far from the 8 x 64 MiB the lengths announce
        assert during["rss_kib"] - before["rss_kib"] < 48 * 1024, (before, during)
        assert got["answered"] == 8 and got["open"] == 0, got
        (message,) = got["messages"]
        assert message.startswith("PermissionDenied: a request of 67,108,864 bytes needs a role"), message
        assert f"{users.mallory} holds no role" in message
        assert engage_and_release(side, "mallory's big frames") < 2.0
    finally:
        flood.stop()
