"""console/startup.py: the garbage collector is paused while govcon imports and starts, then resumed
with what survived frozen. In fresh interpreters, since freezing is for the whole process."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import gc, json, sys
import console.__main__ as entry
from console import startup
during = {}
real_resume = startup.resume
def resume(**kw):                                # what the collector was like up to the resume
    during.update(enabled=gc.isenabled(), paused=startup.paused(), cli_imported="console.cli" in sys.modules)
    collections = []
    gc.callbacks.append(lambda phase, info: collections.append(info["generation"]) if phase == "start" else None)
    real_resume(**kw)
    during["full_collections"] = collections.count(2)
startup.resume = resume
sys.argv = ["govcon", *sys.argv[1:]]
code = entry.run()                               # the installed `govcon` command's own function
print(json.dumps({"during": during, "code": code, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "paused": startup.paused()}))
"""


def _run(tmp_path, *argv: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GOVCON_DATABASE_URL": str(tmp_path / "g.db"),
           "GOVCON_CONFIG": str(tmp_path / "absent.toml")}
    out = subprocess.run([sys.executable, "-c", SCRIPT, *argv], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_one_shot_command_resumes_the_collector_with_the_imports_frozen(tmp_path):
    doc = _run(tmp_path, "db", "init")
    # and without a full collection: a one-shot process ends soon, and collecting cost 30 ms of its ~300
    assert doc["during"] == {"enabled": False, "paused": True, "cli_imported": True, "full_collections": 0}
    assert doc["code"] == 0 and doc["enabled"] and not doc["paused"]
    assert doc["frozen"] > 0  # what the imports made is frozen (how much is the start-up benchmark's business)


def test_the_installed_command_is_the_pausing_entry_point():
    assert 'govcon = "console.__main__:run"' in (ROOT / "pyproject.toml").read_text()


def test_resume_without_pause_leaves_the_collector_alone():
    from console import startup
    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        startup.resume()
        assert not gc.isenabled() and gc.get_freeze_count() == frozen
    finally:
        gc.enable()


def test_resume_collects_only_when_asked():
    """resume(collect=True) runs one full collection before freezing; collect=False none."""
    code = """
import gc
from console import startup
startup.pause()
full = []
gc.callbacks.append(lambda phase, info: full.append(1) if phase == "start" and info["generation"] == 2 else None)
startup.resume(collect=True)
assert full == [1] and gc.isenabled() and gc.get_freeze_count() > 0, full
startup.pause(); startup.resume(collect=False)
assert full == [1], full
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_only_the_long_running_commands_collect_before_freezing():
    from console.cli import build_parser, runs_long
    parse = build_parser().parse_args
    assert runs_long(parse(["serve"])) and runs_long(parse(["demo"]))
    assert not any(runs_long(parse(argv)) for argv in (["status"], ["gate", "restart_service"], ["db", "init"],
                                                       ["kill-switch", "engage", "--reason", "x"]))
