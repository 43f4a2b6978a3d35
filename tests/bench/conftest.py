"""Benchmarks (`make bench`): files named bench_*.py, so the default run never collects them.

The 1,000,000-event stores are built once per session from the simulator's history (about 180 days
ending at END) through the real Ingestor. ``GOVCON_BENCH_CACHE=DIR`` keeps the SQLite one between
sessions (keyed by the simulator's parameters and the schema revision).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine import simulator
from engine.clock import ManualClock
from engine.governance import Governance
from engine.simulator import generate_history
from storage.migrate import head_revision
from storage.store import Store
from tests.bench.figures import report, timed
from tests.safety_lane import use_production_lane

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HISTORY_DAYS = 180
#: 78 commands an hour for 180 days is 1,007,580 events (about 3.1 events per command)
HISTORY = {"commands_per_hour": 78, "seed": 1}
MIN_EVENTS = 1_000_000


def pytest_collect_file(file_path: Path, parent):
    # a file named on the command line is collected by pytest itself, whatever its name
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def compiled_bytecode() -> None:
    """Whole-process figures as an installed govcon gives them: with the project's .pyc files written.
    The environment here sets PYTHONDONTWRITEBYTECODE=1, so every process would otherwise compile the
    project's modules from source (about 0.15 s of CPU per `govcon status`: docs/performance.md)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(ROOT / p) for p in
                                                              ("console", "engine", "screens", "storage"))],
                   check=True)


@pytest.fixture(scope="session", autouse=True)
def production_safety_deadline() -> Iterator[None]:
    """Figures with the production safety lane, not the functional tests' longer one (tests/safety_lane.py)."""
    with pytest.MonkeyPatch.context() as patch:
        use_production_lane(patch)
        yield


@dataclass
class BigStore:
    name: str
    store: Store
    gov: Governance
    clock: ManualClock
    events: int


def _fill(url: str, name: str) -> BigStore:
    clock = ManualClock(END)
    store = Store(url)
    gov = Governance(store, clock)
    if gov.is_initialised():  # a cached store
        with store.read() as conn:
            events = sum(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                         for t in ("command_events", "incidents", "safety_events", "eval_coverage"))
        return BigStore(name, store, gov, clock, events)
    gov.init_store("bench", phase_started=END - timedelta(days=HISTORY_DAYS + 20))
    history = generate_history(END - timedelta(days=HISTORY_DAYS), END, **HISTORY)
    seconds, result = timed(lambda: gov.ingestor.ingest_objects(history))
    assert result.rejected == 0 and result.accepted >= MIN_EVENTS, result.to_json()
    report(f"building the 1M-event {name} store (simulator + Ingestor.ingest_objects)",
           events=f"{result.accepted:,} ({result.kinds})", seconds=f"{seconds:.1f} s",
           rate=f"{result.accepted / seconds:,.0f} events/s")
    return BigStore(name, store, gov, clock, result.accepted)


def _cache_key() -> str:
    source = Path(simulator.__file__).read_bytes() + repr(sorted(HISTORY.items())).encode()
    digest = hashlib.sha256(source).hexdigest()
    return f"big-{head_revision()}-{digest[:12]}.db"


@pytest.fixture(scope="session")
def big_sqlite(tmp_path_factory) -> BigStore:
    cache = os.environ.get("GOVCON_BENCH_CACHE")
    path = (Path(cache) / _cache_key()) if cache else tmp_path_factory.mktemp("big") / "governance.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        big = _fill(str(path), "SQLite")
    except BaseException:
        for leftover in path.parent.glob(path.name + "*"):  # never leave a half-built cache behind
            leftover.unlink()
        raise
    yield big
    big.store.dispose()


@pytest.fixture(scope="session")
def big_postgres() -> BigStore:
    url = os.environ.get("GOVCON_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("GOVCON_TEST_POSTGRES_URL not set: the PostgreSQL figures are not measured")
    schema = "bench_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    try:
        big = _fill(f"{url}{sep}options=-csearch_path%3D{schema}", "PostgreSQL")
        with big.store.write(serialise=False) as conn:  # fresh statistics, as autovacuum would have
            conn.execute(sa.text("ANALYZE"))
        yield big
        big.store.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def big_store(request) -> BigStore:
    return request.getfixturevalue(f"big_{request.param}")


def postgres_version(store: Store) -> str:
    with store.read() as conn:
        return conn.execute(sa.text("SHOW server_version")).scalar_one()

