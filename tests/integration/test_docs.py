"""What the docs ship must work: the systemd unit verifies, the README's quick start is two commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (REPO / "docs/deploy/govcon.service").read_text()
    assert "/opt/govcon/.venv/bin/govcon" in unit
    govcon = Path(sys.executable).with_name("govcon")
    assert govcon.exists()
    target = tmp_path / "govcon.service"  # the same unit, pointing at this checkout's govcon
    target.write_text(unit.replace("/opt/govcon/.venv/bin/govcon", str(govcon)))
    done = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "govcon.service" not in done.stderr, done.stderr  # no warnings about our unit


def test_readme_quick_start_is_make_run_and_make_test():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\s+```\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
