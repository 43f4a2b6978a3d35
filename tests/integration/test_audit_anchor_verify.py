"""`govcon audit verify --anchor-file PATH` (issue 13 pt 3): the head the audit-anchor job recorded outside
the store is checked without copying it by hand — the log must still hold the newest anchored head. A log
truncated after the anchor (its in-store head moved with it) is found; a missing, empty or garbled anchor
file is refused naming the file and line, never taken as "nothing to check". Both stores."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from engine.audit_anchor import AnchorSettings
from engine.jobs import GovconScheduler
from storage.tables import audit_log, governance_state
from tests.conftest import OPERATOR
from tests.integration.test_audit_keyed import key_file, kgov, normal_life  # noqa: F401


def anchored(gov, clock, path) -> None:
    sched = GovconScheduler(gov, "test", audit_anchor=AnchorSettings(file=path))
    sched.is_leader = True
    sched._guard("audit-anchor", sched.anchor_audit)()
    clock.advance(timedelta(minutes=5))


def test_verify_against_the_anchor_file_holds_while_the_log_grows(kgov, clock, cli, tmp_path):  # noqa: F811
    normal_life(kgov, clock)
    path = tmp_path / "anchors" / "audit-head.log"
    anchored(kgov, clock, path)
    kgov.grant_role(OPERATOR, "frank", "on-call")
    anchored(kgov, clock, path)
    newest = path.read_text().splitlines()[-1].split()[1]
    kgov.grant_role(OPERATOR, "gina", "on-call")
    result = cli("audit", "verify", "--anchor-file", str(path))
    assert result.code == 0, result.err
    assert "expecting the head anchored at" in result.out and newest in result.out
    assert "audit log intact" in result.out


def test_a_log_truncated_after_the_anchor_is_found(kgov, clock, cli, tmp_path):  # noqa: F811
    normal_life(kgov, clock)
    path = tmp_path / "audit-head.log"
    anchored(kgov, clock, path)
    seq = int(path.read_text().split()[1].split(":")[0])
    with kgov.store.write() as conn:  # drop the newest two entries and move the in-store head with them
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq > seq - 2))
        last = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).one()
        conn.execute(sa.update(governance_state).values(audit_head_seq=last.seq, audit_head_hash=last.hash))
    assert kgov.audit_verify()[1] is None  # the chain alone is consistent inside the store
    result = cli("audit", "verify", "--anchor-file", str(path))
    assert result.code == 6
    assert f"the log ends at entry {seq - 2}, shorter than the head recorded earlier" in result.err


def test_a_missing_empty_or_garbled_anchor_file_is_refused_naming_it(kgov, clock, cli, tmp_path):  # noqa: F811
    missing = tmp_path / "nowhere.log"
    result = cli("audit", "verify", "--anchor-file", str(missing))
    assert result.code not in (0, 6) and f"--anchor-file {missing}: no such file" in result.err
    empty = tmp_path / "empty.log"
    empty.write_text("\n")
    result = cli("audit", "verify", "--anchor-file", str(empty))
    assert result.code not in (0, 6) and "holds no anchored head yet" in result.err
    garbled = tmp_path / "garbled.log"
    anchored(kgov, clock, garbled)
    with garbled.open("a") as f:
        f.write("2026-11-20T12:00:00Z 7:nothex sqlite:///x\n")
    result = cli("audit", "verify", "--anchor-file", str(garbled))
    assert result.code not in (0, 6) and f"--anchor-file {garbled}, line 2: not an anchor line" in result.err
    good = tmp_path / "good.log"
    anchored(kgov, clock, good)
    result = cli("audit", "verify", "--anchor-file", str(good), "--expect-head", "1:" + "0" * 64)
    assert result.code not in (0, 6) and "not both" in result.err
