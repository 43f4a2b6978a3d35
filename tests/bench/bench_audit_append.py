"""audit.append before and after the keyed chain (issue 13 pt 3): the pre-0012 append (read from git, the
parent of the commit that keyed the chain) against today's, unkeyed and keyed, interleaved in one run on a
SQLite file and, with GOVCON_TEST_POSTGRES_URL, on PostgreSQL. 10 appends per write transaction.

    .venv/bin/python tests/bench/bench_audit_append.py
"""

from __future__ import annotations

import collections
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from storage import audit, state_repo  # noqa: E402
from storage.store import Store  # noqa: E402

BEFORE = "59d7cad^"  # the commit before "Keyed audit chain"


def old_append():
    src = subprocess.run(["git", "show", f"{BEFORE}:storage/audit.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    path = Path(tempfile.mkdtemp()) / "audit_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("audit_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["audit_before"] = mod
    spec.loader.exec_module(mod)
    return mod.append


def per_append_us(url: str, fn, key=None, n: int = 1000) -> float:
    store = Store(url)
    now = datetime.now(UTC)
    with store.write() as conn:
        state_repo.create_state(conn, current_phase="L3", phase_started_at=now, adopted_at=now, command_whitelist=[],
                                paused_command_types=[], created_at=now, created_by="a", updated_at=now)
    audit.use_key(store.engine.url, key)
    t = time.perf_counter()
    for i in range(n // 10):
        with store.write() as conn:
            for _ in range(10):
                fn(conn, at=now, actor="alice", action="role.grant", target="bob", details={"role": "x", "i": i})
    elapsed = time.perf_counter() - t
    audit.use_key(store.engine.url, None)
    store.dispose()
    return elapsed / n * 1e6


def main() -> None:
    before = old_append()
    key = audit.AuditKey(b"k" * 32)
    variants = (("before", before, None), ("unkeyed", audit.append, None), ("keyed", audit.append, key))
    pg = os.environ.get("GOVCON_TEST_POSTGRES_URL")
    for name, make_url, _drop in (("sqlite", lambda: str(Path(tempfile.mkdtemp()) / "g.db"), None),
                                 *((("postgres", None, None),) if pg else ())):
        runs = collections.defaultdict(list)
        for _ in range(4):
            for label, fn, k in variants:
                if name == "sqlite":
                    runs[label].append(per_append_us(make_url(), fn, k))
                    continue
                schema = "bench_" + uuid.uuid4().hex[:8]
                admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
                with admin.connect() as c:
                    c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
                try:
                    sep = "&" if "?" in pg else "?"
                    runs[label].append(per_append_us(f"{pg}{sep}options=-csearch_path%3D{schema}", fn, k))
                finally:
                    with admin.connect() as c:
                        c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                    admin.dispose()
        best = {label: min(v) for label, v in runs.items()}
        print(f"{name}: µs per append (best of 4) " + ", ".join(f"{k} {v:.0f}" for k, v in best.items())
              + f"; unkeyed/before {best['unkeyed'] / best['before']:.2f}, keyed/before "
                f"{best['keyed'] / best['before']:.2f}")


if __name__ == "__main__":
    main()
