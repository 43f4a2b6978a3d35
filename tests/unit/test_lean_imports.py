"""What the deferred (function-level) imports buy, kept: a CLI command and the console's first screen do not
import the frameworks of paths they never take. Importing everything up front costs 3x the CPU of
`govcon status` and 1.6x the console's launch (tests/bench/bench_startup.py, docs/performance.md "Start-up
optimisations kept or removed"); these tests fail when a top-level import brings one of them back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: the service's and the sinks' frameworks, and the migration machinery of a store already at head
SERVICE_ONLY = {"fastapi", "starlette", "uvicorn", "httpx", "alembic", "prometheus_client", "smtplib"}
#: a command line prints text: the terminal UI is the console's
CONSOLE_ONLY = {"textual", "plotext"}

#: a store's other dialect: SQLAlchemy's PostgreSQL dialect alone is ~20 ms of imports (storage/tables.py
#: builds its partial indexes, whose postgresql_where would import it, only on demand)
POSTGRES_ONLY = {"psycopg", "sqlalchemy.dialects.postgresql"}
_POSTGRES_SET = "POSTGRES = {'sqlalchemy.dialects.postgresql'}\n"

STATUS = _POSTGRES_SET + """
import json, sys
import console.__main__ as entry
sys.argv = ["govcon", *sys.argv[1:]]
code = entry.run()
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules} | (POSTGRES & set(sys.modules)))}))
"""

CONSOLE = _POSTGRES_SET + """
import asyncio, json, sys
from console import startup
from console.app import console_app
from engine.governance import Governance
from storage.store import Store

async def main():
    gov = Governance(Store(sys.argv[1]))
    app = console_app(gov, operator="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
    gov.store.dispose()

asyncio.run(main())
print(json.dumps({"code": 0, "modules": sorted({m.split(".")[0] for m in sys.modules} | (POSTGRES & set(sys.modules)))}))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GOVCON_DATABASE_URL": str(tmp_path / "g.db"),
            "GOVCON_CONFIG": str(tmp_path / "absent.toml"), "TERM": "xterm-256color"}


def _modules(tmp_path: Path, script: str, *argv: str, code: int = 0) -> set[str]:
    out = subprocess.run([sys.executable, "-c", script, *argv], cwd=ROOT, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["code"] == code
    return set(doc["modules"])


@pytest.fixture
def store_at_head(tmp_path: Path) -> Path:
    _modules(tmp_path, STATUS, "db", "init")
    return tmp_path / "g.db"


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["events", "list"], ["readiness"]])
def test_a_cli_command_leaves_the_service_and_the_console_unimported(tmp_path, store_at_head, command):
    loaded = _modules(tmp_path, STATUS, *command)
    assert {"sqlalchemy", "engine", "storage"} <= loaded  # it did run against the store
    assert not loaded & (SERVICE_ONLY | CONSOLE_ONLY), sorted(loaded & (SERVICE_ONLY | CONSOLE_ONLY))
    assert not loaded & POSTGRES_ONLY, sorted(loaded & POSTGRES_ONLY)  # the store is a SQLite file


def test_govcon_gate_in_embedded_mode_leaves_the_service_and_the_console_unimported(tmp_path, store_at_head):
    # no GOVCON_SERVER: the full CLI decides on the store (at L3 the ask needs approval: exit 3)
    loaded = _modules(tmp_path, STATUS, "gate", "shell", "--service", "api", "--agent", "bot", code=3)
    assert {"sqlalchemy", "engine", "storage"} <= loaded
    assert not loaded & (SERVICE_ONLY | CONSOLE_ONLY | POSTGRES_ONLY), sorted(loaded & (SERVICE_ONLY | CONSOLE_ONLY))


def test_the_console_on_its_first_screen_leaves_the_service_unimported(tmp_path, store_at_head):
    loaded = _modules(tmp_path, CONSOLE, str(store_at_head))
    assert "textual" in loaded  # the console did start
    assert not loaded & (SERVICE_ONLY | POSTGRES_ONLY), sorted(loaded & (SERVICE_ONLY | POSTGRES_ONLY))
