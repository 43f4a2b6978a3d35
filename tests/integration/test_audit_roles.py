"""The hash-chained audit log (edits, removals and reorderings are found and named), roles (refusals
name the role; the last admin stays) and identity (the OS user, never $USER)."""

from __future__ import annotations

import os
import pwd
from datetime import timedelta

import pytest
import sqlalchemy as sa

from console.identity import current_operator
from engine.errors import InvalidInput, PermissionDenied
from storage import audit
from tests.conftest import OPERATOR

CHAOS = "chaos-engineering-tests-passing"


def many_operations(gov, clock, n=12):
    gov.grant_role(OPERATOR, "bob", "tech-lead")
    for i in range(n):
        clock.advance(timedelta(minutes=1))
        gov.attest("bob" if i % 2 else OPERATOR, CHAOS, passed=bool(i % 3), evidence=f"game day {i} «ünïcode»")
    gov.grant_role(OPERATOR, "carol", "ops-lead")
    gov.revoke_role(OPERATOR, "bob", "tech-lead")
    gov.prune(OPERATOR, timedelta(days=90))


def execute(store, sql: str) -> None:
    with store.write() as conn:
        conn.execute(sa.text(sql))


# --- audit ------------------------------------------------------------------------------------


def test_every_change_is_an_audit_entry_in_order(gov, clock):
    many_operations(gov, clock, n=3)
    entries = gov.audit_entries()
    assert [e["action"] for e in reversed(entries)] == [
        "store.init", "role.grant", "readiness.attest", "readiness.attest", "readiness.attest",
        "role.grant", "role.revoke", "db.prune"]
    assert [e["seq"] for e in entries] == list(range(8, 0, -1))
    attest = next(e for e in entries if e["action"] == "readiness.attest")
    assert attest["actor"] == OPERATOR and attest["target"] == CHAOS and attest["reason"].startswith("game day")
    assert entries[-1]["details"]["roles"] == ["admin"]


def test_an_intact_chain_verifies(gov, clock):
    many_operations(gov, clock)
    checked, problem = gov.audit_verify()
    assert problem is None
    assert checked == len(gov.audit_entries(limit=1000)) == 17


def test_verify_walks_long_chains_in_batches(gov, store, clock):
    many_operations(gov, clock)
    with store.read() as conn:
        assert audit.verify(conn, batch=4) == (17, None)


def test_an_edited_row_is_named(gov, store, clock):
    many_operations(gov, clock)
    execute(store, "UPDATE audit_log SET reason = 'x' WHERE seq = 2")
    checked, problem = gov.audit_verify()
    assert (checked, problem.seq) == (1, 2)
    assert "edited" in problem.problem
    assert str(problem).startswith("audit entry 2: edited")


def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link(gov, store, clock):
    many_operations(gov, clock)
    with store.write() as conn:
        row = conn.execute(sa.select(audit.T).where(audit.T.c.seq == 3)).one()
        forged = audit.entry_hash(row.prev_hash, row.seq, row.at, "mallory", row.action, row.target,
                                  row.reason, row.details, state=row.state)
        conn.execute(sa.update(audit.T).where(audit.T.c.seq == 3).values(actor="mallory", hash=forged))
    checked, problem = gov.audit_verify()
    assert problem.seq == 4 and "link" in problem.problem


def test_edited_details_are_found(gov, store, clock):
    many_operations(gov, clock)
    with store.write() as conn:
        conn.execute(sa.update(audit.T).where(audit.T.c.seq == 5).values(details={"passed": True}))
    assert gov.audit_verify()[1].seq == 5


def test_a_deleted_row_is_named_as_a_gap(gov, store, clock):
    many_operations(gov, clock)
    execute(store, "DELETE FROM audit_log WHERE seq = 4")
    checked, problem = gov.audit_verify()
    assert checked == 3 and problem.seq == 4
    assert problem.problem == "removed (entry 4 is missing before entry 5)"


def test_several_deleted_rows_are_named_as_a_range(gov, store, clock):
    many_operations(gov, clock)
    execute(store, "DELETE FROM audit_log WHERE seq IN (6, 7, 8)")
    problem = gov.audit_verify()[1]
    assert problem.seq == 6 and problem.problem == "removed (entries 6-8 are missing before entry 9)"


def test_deleting_the_first_row_is_found(gov, store, clock):
    many_operations(gov, clock)
    execute(store, "DELETE FROM audit_log WHERE seq = 1")
    checked, problem = gov.audit_verify()
    assert (checked, problem.seq) == (0, 1) and "removed" in problem.problem


def test_swapped_rows_are_found(gov, store, clock):
    many_operations(gov, clock)
    with store.write() as conn:
        a, b = (conn.execute(sa.select(audit.T).where(audit.T.c.seq == s)).one() for s in (3, 4))
        fields = ("at", "actor", "action", "target", "reason", "details", "prev_hash", "hash")
        conn.execute(sa.update(audit.T).where(audit.T.c.seq == 3).values(**{f: getattr(b, f) for f in fields}))
        conn.execute(sa.update(audit.T).where(audit.T.c.seq == 4).values(**{f: getattr(a, f) for f in fields}))
    checked, problem = gov.audit_verify()
    assert checked == 2 and problem.seq == 3


def test_the_chain_continues_after_the_store_is_reopened(gov, store_url, clock):
    from engine.governance import Governance
    from storage.store import Store

    many_operations(gov, clock, n=2)
    other = Store(store_url)
    try:
        Governance(other, clock).grant_role(OPERATOR, "dave", "on-call")
    finally:
        other.dispose()
    assert gov.audit_verify() == (8, None)


# --- roles ------------------------------------------------------------------------------------


def test_an_operator_without_the_role_is_refused_naming_it(gov):
    with pytest.raises(PermissionDenied) as info:
        gov.attest("bob", CHAOS, passed=True, evidence="game day")
    msg = str(info.value)
    assert "attesting checklist items needs one of the roles admin, tech-lead, ops-lead" in msg
    assert all(role in msg for role in ("admin", "tech-lead", "ops-lead"))
    assert "bob holds no role" in msg
    assert info.value.exit_code == 5
    assert [e["action"] for e in gov.audit_entries()] == ["store.init"]  # nothing was recorded


def test_grant_then_succeed_revoke_then_refused(gov):
    assert gov.grant_role(OPERATOR, "bob", "tech-lead") is True
    assert gov.grant_role(OPERATOR, "bob", "tech-lead") is False  # already held: no second grant
    assert gov.roles_of("bob") == {"tech-lead"}
    gov.attest("bob", CHAOS, passed=True, evidence="game day")
    assert gov.revoke_role(OPERATOR, "bob", "tech-lead") is True
    assert gov.revoke_role(OPERATOR, "bob", "tech-lead") is False
    with pytest.raises(PermissionDenied, match="tech-lead"):
        gov.attest("bob", CHAOS, passed=True, evidence="game day")
    actions = [(e["action"], e["target"], e["details"].get("role")) for e in reversed(gov.audit_entries())]
    assert actions[1:] == [("role.grant", "bob", "tech-lead"), ("readiness.attest", CHAOS, None),
                           ("role.revoke", "bob", "tech-lead")]


def test_a_role_unrelated_to_the_action_is_not_enough(gov):
    gov.grant_role(OPERATOR, "bob", "on-call")
    with pytest.raises(PermissionDenied, match="bob holds on-call"):
        gov.attest("bob", CHAOS, passed=True, evidence="game day")


def test_only_an_admin_grants_roles(gov):
    gov.grant_role(OPERATOR, "bob", "ops-lead")
    with pytest.raises(PermissionDenied, match="needs the role admin"):
        gov.grant_role("bob", "bob", "admin")
    assert gov.roles_of("bob") == {"ops-lead"}


def test_the_last_admin_cannot_be_revoked(gov):
    with pytest.raises(InvalidInput, match="last admin"):
        gov.revoke_role(OPERATOR, OPERATOR, "admin")
    assert gov.roles_of(OPERATOR) == {"admin"}
    gov.grant_role(OPERATOR, "bob", "admin")
    gov.revoke_role(OPERATOR, OPERATOR, "admin")
    assert gov.roles_of(OPERATOR) == set()
    with pytest.raises(InvalidInput, match="last admin"):
        gov.revoke_role("bob", "bob", "admin")


def test_unknown_roles_and_bad_operator_names_are_refused(gov):
    with pytest.raises(InvalidInput, match="unknown role 'overlord'"):
        gov.grant_role(OPERATOR, "bob", "overlord")
    with pytest.raises(InvalidInput, match="without spaces"):
        gov.grant_role(OPERATOR, "bob smith", "on-call")
    assert gov.role_grants() == [{"operator": OPERATOR, "role": "admin", "grantedBy": OPERATOR,
                                  "grantedAt": "2026-11-20T12:00:00Z"}]


def test_prune_needs_an_admin_or_ops_lead(gov):
    with pytest.raises(PermissionDenied, match="needs one of the roles admin, ops-lead"):
        gov.prune("bob", timedelta(days=90))


# --- identity ---------------------------------------------------------------------------------


def test_identity_is_the_effective_uid_never_user_or_logname(monkeypatch):
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    monkeypatch.setenv("USERNAME", "mallory")
    expected = pwd.getpwuid(os.geteuid()).pw_name
    assert expected != "mallory"
    assert current_operator() == expected


def test_deleting_the_newest_rows_is_found(gov, store, clock):
    """The head (seq, hash) is anchored in governance_state, so a truncated log does not verify."""
    many_operations(gov, clock)
    execute(store, "DELETE FROM audit_log WHERE seq >= 16")
    checked, problem = gov.audit_verify()
    assert checked == 15
    assert problem is not None and problem.seq == 16 and "removed" in problem.problem
