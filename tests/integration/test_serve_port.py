"""`govcon serve` on a port another process holds: one clear line and exit 1, before the scheduler or
anything else starts — no scheduler traceback first (issue 15)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.serve_process import ROOT


def test_serve_on_a_busy_port_says_so_without_a_traceback(tmp_path):
    env = dict(os.environ, GOVCON_DATABASE_URL=str(tmp_path / "governance.db"))
    init = subprocess.run([sys.executable, "-m", "console", "db", "init"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        pid_file = tmp_path / "serve.pid"
        r = subprocess.run([sys.executable, "-m", "console", "serve", "--port", str(port), "--pid-file",
                            str(pid_file)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"govcon: cannot listen on 127.0.0.1:{port}: Address already in use" in r.stderr, r.stderr
    assert "--port" in r.stderr
    for noise in ("Traceback", "scheduler", "lease", "uvicorn", "Application startup"):
        assert noise not in r.stderr, r.stderr
    assert not pid_file.exists()
