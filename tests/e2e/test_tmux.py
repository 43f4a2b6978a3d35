"""The real `govcon` console in a real terminal (tmux): it sees a trip made by another process, engages
the kill switch with `!` Enter, and quits with `q`. Textual draws on stderr, so only stdout is
redirected. A `!` typed into a resolve note stays in the note."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console", check=False).stdout

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear within {timeout}s; the screen shows:\n{self.screen()}")

    def alive(self) -> bool:
        return self.run("has-session", "-t", "console", check=False).returncode == 0


def govcon(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60)


@pytest.fixture
def store_env(tmp_path) -> dict[str, str]:
    env = dict(os.environ, GOVCON_DATABASE_URL=str(tmp_path / "governance.db"))
    started = (datetime.now(UTC) - timedelta(days=200)).date().isoformat()
    result = govcon(env, "db", "init", "--phase-started", started)
    assert result.returncode == 0, result.stderr
    me = json.loads(govcon(env, "roles", "list", "--json").stdout)[0]["operator"]
    assert govcon(env, "roles", "grant", me, "on-call").returncode == 0
    return env


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it)")
    t = Tmux(f"govcon-e2e-{os.getpid()}")
    yield t
    t.run("kill-server", check=False)


def test_console_in_tmux_sees_a_trip_engages_the_kill_switch_and_quits(store_env, tmux, tmp_path):
    env_args = " ".join(f"{k}={shlex.quote(v)}" for k, v in store_env.items()
                        if k.startswith(("GOVCON_", "XDG_", "LC_", "TZ", "PATH", "HOME")))
    # stdout is redirected, so Textual cannot ask it for the terminal size: COLUMNS and LINES say it
    command = f"cd {shlex.quote(str(REPO))} && env {env_args} TERM=xterm-256color COLUMNS=120 LINES=40 " \
              f"{shlex.quote(sys.executable)} -m console > {shlex.quote(str(tmp_path / 'stdout.txt'))}"
    tmux.run("new-session", "-d", "-s", "console", "-x", "120", "-y", "40", command)
    tmux.wait_for("Circuit breakers", timeout=20)
    tmux.wait_for("no open events")

    now = datetime.now(UTC)
    burst = tmp_path / "burst.jsonl"
    burst.write_text("".join(
        json.dumps({"kind": "command", "id": f"e2e-{i}", "type": "drain_node", "status": status, "autonomous": True,
                    "at": _iso(now - timedelta(seconds=30 - i))}) + "\n"
        for i in range(12) for status in ("proposed", "failed")))
    ingest = govcon(store_env, "ingest", str(burst), "--json")
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["accepted"] == 24

    shown = tmux.wait_for("tripped: ", timeout=10)  # the toast: "Circuit breaker tripped: …" or "2 circuit …"
    assert "tripped" in shown and "TRIPPED" in shown

    # issue 15 pt 3: Enter on the selected unresolved event drills down to what made it trip; Esc returns
    tmux.run("send-keys", "-t", "console", "Enter")
    drill = tmux.wait_for("Why it tripped")
    assert "drain_node  failed  autonomous" in drill and "e2e-11" in drill, drill
    assert "1-8 Screens  r Resolve" in drill, drill  # the drill-down's key bar offers r (a toast may cover its end)
    tmux.run("send-keys", "-t", "console", "Escape")
    tmux.wait_for("Unresolved events")
    assert "Why it tripped" not in tmux.screen()

    # `/` filters as you type, in a line of the screen; a `!` typed there is a character; Esc clears it
    tmux.run("send-keys", "-t", "console", "/")
    tmux.wait_for("Filter (Enter keeps, Esc clears)")
    tmux.run("send-keys", "-t", "console", "-l", "nomatch!")
    filtered = tmux.wait_for("filter 'nomatch!': 0 of")
    assert "ENGAGE THE KILL SWITCH" not in filtered
    tmux.run("send-keys", "-t", "console", "Escape")
    deadline = time.monotonic() + 10
    while "filter 'nomatch!'" in tmux.screen() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "filter 'nomatch!'" not in tmux.screen() and "Filter (" not in tmux.screen(), tmux.screen()
    assert json.loads(govcon(store_env, "status", "--json").stdout)["killSwitch"]["engaged"] is False

    # issue 15: "fixed!" in a resolve note engaged the kill switch; a `!` in a text field is a character
    tmux.run("send-keys", "-t", "console", "r")
    tmux.wait_for("Note (what was found and done)")
    tmux.run("send-keys", "-t", "console", "-l", "fixed!")
    tmux.wait_for("fixed!")
    assert "ENGAGE THE KILL SWITCH" not in tmux.screen()
    tmux.run("send-keys", "-t", "console", "Enter")
    tmux.wait_for("resolved ")
    events = json.loads(govcon(store_env, "events", "list", "--json").stdout)
    events = events.get("events", events) if isinstance(events, dict) else events
    assert [e["note"] for e in events if e["resolved"]] == ["fixed!"], events
    assert json.loads(govcon(store_env, "status", "--json").stdout)["killSwitch"]["engaged"] is False

    tmux.run("send-keys", "-t", "console", "!")
    tmux.wait_for("ENGAGE THE KILL SWITCH")
    tmux.run("send-keys", "-t", "console", "Enter")
    tmux.wait_for("KILL SWITCH ENGAGED")
    status = json.loads(govcon(store_env, "status", "--json").stdout)
    assert status["killSwitch"]["engaged"] is True
    assert status["killSwitch"]["reason"].startswith("engaged from the console by ")

    tmux.run("send-keys", "-t", "console", "q")
    deadline = time.monotonic() + 10
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not tmux.alive(), f"the console did not quit on q:\n{tmux.screen()}"
