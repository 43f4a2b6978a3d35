"""A SQLite store file replaced or removed under a running process (found by an adversarial review).

The connection pools keep the old file open. Before, a service whose file was replaced by a restore kept
answering allow from the old one, while `govcon kill-switch engage` from a shell engaged the new one ("kill switch
ENGAGED", exit 0): the switch held no gate of the service. Now every read and write checks the file is still the
one first seen (one stat) and the gate denies before anything else: the process fails closed, /health says
unhealthy, and an engage there goes to the marker file (which every process on the path honours).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import httpx
import pytest

from engine.governance import Governance
from storage import state_repo
from storage.db import StoreUnavailable
from storage.store import Store
from tests.conftest import OPERATOR
from tests.serve_process import ServeProcess


def _copy(src: Path, dst: Path) -> None:
    """A consistent copy, as `db backup` makes one."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def _ready(gov: Governance) -> None:
    gov.init_store(OPERATOR)
    for role in ("incident-commander", "on-call"):
        gov.grant_role(OPERATOR, OPERATOR, role)
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"])


def _replace(path: Path) -> None:
    restored = path.with_name("restored.db")
    _copy(path, restored)
    os.replace(restored, path)  # a restore renamed over the store, as an operator would


@pytest.mark.parametrize("change", [_replace, Path.unlink], ids=["replaced", "removed"])
def test_a_process_whose_store_file_changed_fails_closed_and_engages_by_the_marker(tmp_path, clock, change):
    path = tmp_path / "governance.db"
    gov = Governance(Store(str(path)), clock)
    try:
        _ready(gov)
        assert gov.gate.decide("restart_service", take_grant=False).decision == "allow"
        assert gov.gate.decide("restart_service", take_grant=False).decision == "allow"  # a kept snapshot now
        assert gov.store.replaced() is None
        change(path)
        word = "replaced" if change is _replace else "removed"
        decision = gov.gate.decide("restart_service")
        assert decision.decision == "deny" and f"was {word} after this process opened it" in decision.reason
        with pytest.raises(StoreUnavailable, match=f"was {word}"):
            with gov.store.read():
                pass
        result = gov.overrides.kill_switch("engage", OPERATOR, "INC-5 the store moved")
        marker = Path(f"{path}.kill-switch")
        assert result.via == "marker" and marker.exists(), result.message
        if change is _replace:  # a new process on the new file honours that marker
            other = Governance(Store(str(path), apply_migrations=False), clock)
            try:
                assert other.gate.decide("restart_service").decision == "deny"
            finally:
                other.store.dispose()
    finally:
        gov.store.dispose()


def test_a_store_not_yet_created_is_not_taken_for_a_removed_one(tmp_path, clock):
    path = tmp_path / "new.db"
    store = Store(str(path), apply_migrations=False)
    try:
        assert store.replaced() is None  # no file yet: the first connection creates it
        with store.write() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x)")
        assert store.replaced() is None and path.exists()
    finally:
        store.dispose()


def test_a_service_whose_store_file_is_replaced_denies_and_reports_unhealthy(tmp_path, clock):
    path = tmp_path / "governance.db"
    gov = Governance(Store(str(path)), clock)
    _ready(gov)
    gov.close()
    server = ServeProcess(str(path), tmp_path).wait_ready()
    try:
        ask = {"commandType": "restart_service"}
        assert httpx.post(server.base + "/api/gate", json=ask, timeout=30).json()["decision"] == "allow"
        _replace(path)
        answer = httpx.post(server.base + "/api/gate", json=ask, timeout=30).json()
        assert answer["decision"] == "deny" and "was replaced after this process opened it" in answer["reason"]
        health = httpx.get(server.base + "/health", timeout=30)
        assert health.status_code == 503, health.text
    finally:
        assert server.stop() == 0
