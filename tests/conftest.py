"""Shared fixtures: a movable clock, real stores (a SQLite file and, where configured, PostgreSQL),
and the removal of nondeterminism (config discovery, locale, the operator's environment)."""

from __future__ import annotations

import os

# The PostgreSQL safety lane's deadline (1.5 s in production) is a latency bar: on a loaded CI machine with
# every xdist worker busy, a functional test's gate could miss it and fail closed. The functional tests get
# room here, set before storage/db.py reads it; tests/integration/test_hung_postgres.py holds the 1.5 s bar
# (tests/safety_lane.py gives it, and the benchmarks, the production lane).
os.environ.setdefault("GOVCON_SAFETY_DEADLINE", "6")
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings

from engine.clock import ManualClock
from engine.governance import Governance
from storage.store import Store
from tests.store_template import ENABLED as TEMPLATE_ENABLED
from tests.store_template import StoreTemplate

# hypothesis: no per-example deadline (a loaded 2-core machine makes any example slow now and then: a
# deadline would fail a correct property); in CI the examples are derandomized, the same on every run, so
# CI is never red from a draw no developer saw, while a developer's runs keep exploring new ones
settings.register_profile("govcon", deadline=None, derandomize=bool(os.environ.get("CI")))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "govcon"))

PG_URL = os.environ.get("GOVCON_TEST_POSTGRES_URL")
T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
OPERATOR = "alice"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "migrate_from_scratch: the `store` fixture runs the real migrations instead of copying the "
        "per-worker migrated template (tests/store_template.py)")


@pytest.fixture(autouse=True)
def _isolate_environment(tmp_path_factory, monkeypatch):
    """No test reads the developer's config, store or locale."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("GOVCON_CONFIG", str(home / "config.toml"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))  # a PostgreSQL store's kill-switch marker file
    monkeypatch.delenv("GOVCON_KILL_SWITCH_MARKER", raising=False)
    monkeypatch.delenv("GOVCON_DATABASE_URL", raising=False)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def _postgres_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def postgres_schema(prefix: str = "t_") -> Iterator[str]:
    """A fresh schema on the real PostgreSQL server (its URL), dropped afterwards."""
    schema = prefix + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(schema)
    finally:
        _drop_schema(admin, schema)
        admin.dispose()


@contextmanager
def migrated_to(store: Store, revision: str) -> Iterator[sa.Connection]:
    """``store`` (opened with apply_migrations=False) upgraded to ``revision`` by Alembic, and the same
    transaction for the caller to fill it as a store of that revision would be."""
    from alembic import command

    from storage.migrate import alembic_config
    cfg = alembic_config()
    with store.engine.connect() as conn:
        conn = conn.execution_options(govcon_write=True)
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            yield conn


def require_postgres() -> str:
    """The test server's URL; skips the test without one, and fails it in CI (where .ci/run starts one)."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("GOVCON_TEST_POSTGRES_URL is not set in CI: .ci/run must start PostgreSQL")
        pytest.skip("GOVCON_TEST_POSTGRES_URL not set (source .ci/postgres.sh && start_postgres)")
    return PG_URL


@pytest.fixture
def postgres_url():
    """A fresh schema on the real PostgreSQL server, dropped afterwards."""
    require_postgres()
    with postgres_schema() as url:
        yield url


@pytest.fixture
def own_postgres_database():
    """(admin engine, name, URL) of a database of its own on the test server, not a schema in the shared one:
    for tests that change database-wide settings (read-only). Dropped afterwards."""
    server = require_postgres()
    name = "govcon_own_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin, name, server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _drop_schema(admin: sa.Engine, schema: str, attempts: int = 10) -> None:
    """Drop a test schema. A background writer of the test (the gate's decision log, an outbox flush) may
    still hold a row lock in it, and PostgreSQL then picks one side of the deadlock to abort: retry until
    that writer has finished, against a deadline."""
    for attempt in range(attempts):
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            return
        except sa.exc.OperationalError as exc:
            if "deadlock detected" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "governance.db")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request) -> str:
    """Both real stores: every test using this runs on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> StoreTemplate:
    """This process's migrated stores to copy (each xdist worker has its own basetemp)."""
    return StoreTemplate(tmp_path_factory.getbasetemp())


@pytest.fixture
def store(store_url, request):
    """A store at the newest schema: a copy of the worker's migrated template (tests/store_template.py),
    or migrated from scratch in tests marked ``migrate_from_scratch`` (and with GOVCON_TEST_STORE_TEMPLATE=0)."""
    if TEMPLATE_ENABLED and request.node.get_closest_marker("migrate_from_scratch") is None:
        template = request.getfixturevalue("store_template")
        if store_url.startswith("postgresql"):
            template.fill_postgres(PG_URL, _postgres_schema_url, store_url)
        else:
            template.fill_sqlite(store_url)
    s = Store(store_url)
    yield s
    s.dispose()


@pytest.fixture
def gov(store, clock) -> Iterator[Governance]:
    """An initialised store: L3 since 200 days before T0, OPERATOR is admin."""
    g = Governance(store, clock)
    g.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
    yield g
    # what the gate decided is written before the store goes (as Governance.close does): a decision log still
    # writing after the test would meet a dropped schema, log to a closed stream, and hold locks the drop waits for
    g.actions.decision_log.flush()
