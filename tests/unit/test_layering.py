"""The headless core never imports Textual; engine never reaches up into console or screens."""

import json
import subprocess
import sys


def _modules_after_import(*packages: str) -> set[str]:
    code = ("import json, sys, importlib, pkgutil\n"
            f"for pkg in {list(packages)!r}:\n"
            "    mod = importlib.import_module(pkg)\n"
            "    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):\n"
            "        if '.migrations' not in info.name:  # run by Alembic only\n"
            "            importlib.import_module(info.name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_engine_and_storage_never_import_textual():
    mods = _modules_after_import("engine", "storage")
    assert "engine.governance" in mods and "storage.store" in mods
    # (rich may appear: httpx imports it for its own CLI when it is installed; rich is not Textual)
    leaked = sorted(m for m in mods if m.split(".")[0] in {"textual", "screens", "console", "plotext"})
    assert leaked == []


def test_storage_does_not_import_engine():
    mods = _modules_after_import("storage")
    assert "storage.store" in mods
    assert sorted(m for m in mods if m.split(".")[0] == "engine") == []


def test_storage_status_list_matches_the_domain():
    """storage cannot import engine, so it keeps its own copy of the statuses: they must not drift."""
    from engine.domain import COMMAND_STATUSES
    from storage.events_repo import STATUSES
    assert tuple(STATUSES) == tuple(COMMAND_STATUSES)


def test_migrate_head_constant_names_the_newest_migration():
    from storage.migrate import HEAD, head_revision
    assert HEAD == head_revision()
