"""`govcon` with GOVCON_SERVER in a real terminal (tmux), against a real `govcon serve --socket`: the console
shows the service (not the store), sees a kill switch engaged elsewhere, engages one itself with `!` Enter
(as the OS user the socket names) and quits with `q`. Its store URL is one that cannot be opened: a
console that opened a store would show an error instead."""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from tests.e2e.test_tmux import REPO, govcon, store_env, tmux  # noqa: F401  (fixtures)
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.e2e


def test_console_as_a_client_of_the_socket(store_env, tmux, tmp_path):  # noqa: F811
    sock = tmp_path / "govcon.sock"
    serve = ServeProcess(store_env["GOVCON_DATABASE_URL"], tmp_path, extra_args=("--socket", str(sock))).wait_ready()
    try:
        me = json.loads(govcon(store_env, "roles", "list", "--json").stdout)[0]["operator"]
        assert govcon(store_env, "roles", "grant", me, "incident-commander").returncode == 0
        client = {k: v for k, v in store_env.items() if k.startswith(("XDG_", "LC_", "TZ", "PATH", "HOME"))}
        client.update(GOVCON_SERVER=f"unix://{sock}", GOVCON_DATABASE_URL=str(tmp_path / "nowhere" / "x.db"),
                      GOVCON_CONFIG=str(tmp_path / "absent.toml"))
        env_args = " ".join(f"{k}={shlex.quote(v)}" for k, v in client.items())
        command = f"cd {shlex.quote(str(REPO))} && env {env_args} TERM=xterm-256color COLUMNS=120 LINES=40 " \
                  f"{shlex.quote(sys.executable)} -m console > {shlex.quote(str(tmp_path / 'stdout.txt'))}"
        tmux.run("new-session", "-d", "-s", "console", "-x", "120", "-y", "40", command)
        tmux.wait_for("Circuit breakers", timeout=20)
        tmux.wait_for("store ok")  # read through the service: the store URL given cannot be opened

        engaged = govcon(store_env, "kill-switch", "engage", "--reason", "from another shell")
        assert engaged.returncode == 0, engaged.stderr
        tmux.wait_for("KILL SWITCH ENGAGED")
        assert govcon(store_env, "kill-switch", "release", "--reason", "over").returncode == 0
        tmux.wait_for("released")

        tmux.run("send-keys", "-t", "console", "!")
        tmux.wait_for("ENGAGE THE KILL SWITCH")
        tmux.run("send-keys", "-t", "console", "Enter")
        tmux.wait_for("KILL SWITCH ENGAGED")
        status = json.loads(govcon(store_env, "status", "--json").stdout)
        assert status["killSwitch"]["engaged"] and status["killSwitch"]["by"] == me
        tmux.run("send-keys", "-t", "console", "q")
        import time
        deadline = time.monotonic() + 10
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tmux.alive()
        assert not (tmp_path / "nowhere").exists()
    finally:
        serve.stop()
