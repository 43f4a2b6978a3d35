"""The keyed audit chain on both stores (issue 13 pt 3): each attack a database writer without the key can
make is detected — every row deleted and the head set to 0, a full rewrite with recomputed hashes, state
edited without an audit entry —, a normal life verifies intact, `--expect-head` holds both ways, and the
anchor job writes the head outside the store."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import timedelta

import pytest
import sqlalchemy as sa

from console.config import Config
from engine import audit_verify
from engine.audit_anchor import AnchorSettings
from engine.governance import Governance
from engine.jobs import GovconScheduler
from storage import audit, audit_key, identity_repo, state_repo
from storage.store import Store
from storage.tables import api_tokens, audit_log, governance_state, role_grants
from tests.conftest import OPERATOR, T0
from tests.integration.test_governance_cycle import make_ready


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    path = tmp_path / "service-state" / "audit.key"
    monkeypatch.setenv("GOVCON_AUDIT_KEY_FILE", str(path))
    return path


@pytest.fixture
def kgov(store, clock, key_file):
    """An initialised store whose chain is keyed from entry 1 (the key file created as `db init` does)."""
    audit.use_key(store.engine.url, audit_key.create(key_file))
    g = Governance(store, clock)
    g.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
    yield g
    audit.use_key(store.engine.url, None)


def normal_life(gov, clock) -> str:
    """init (the fixture), roles, a proposal approved by bob, a revert, the kill switch, a token, a rule."""
    make_ready(gov, clock)
    report = gov.cycle.run(OPERATOR)
    assert report["proposal"] is not None, report  # names the blocker if the store was not ready
    pid = report["proposal"]["proposalId"]
    gov.proposals.approve("bob", pid, "tech-lead")
    assert gov.status(with_readiness=False)["currentPhase"] == "L3+"
    clock.advance(timedelta(hours=1))
    assert gov.overrides.revert(OPERATOR, "bad rollout").changed
    assert gov.overrides.engage_kill_switch(OPERATOR, "game day").changed
    assert gov.overrides.release_kill_switch(OPERATOR, "game day over").changed
    gov.tokens.create(OPERATOR, "dave")
    gov.rules.set(OPERATOR, "High Rollback Rate", {"min_samples": 20}, reason="noisy")
    gov.revoke_role(OPERATOR, "dave", "on-call")
    return pid


def problems(store, **kw) -> list[str]:
    return audit_verify.verify(store, **kw).problems


def rewrite(store, change, *, key: audit.AuditKey | None) -> None:
    """What a database writer can do: change rows, then recompute every hash and the head with the key he
    has (none, or one of his own)."""
    with store.write() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
        prev = audit.GENESIS
        for row in rows:
            v = change(row._asdict())
            digest = audit.entry_hash(prev, v["seq"], v["at"], v["actor"], v["action"], v["target"], v["reason"],
                                      v["details"], state=v["state"], key=key)
            conn.execute(sa.update(audit_log).where(audit_log.c.seq == row.seq).values(
                actor=v["actor"], prev_hash=prev, hash=digest, key_id=key.id if key else ""))
            prev = digest
        conn.execute(sa.update(governance_state).values(audit_head_seq=rows[-1].seq, audit_head_hash=prev))


def bob_to_erin(row: dict) -> dict:
    if row["action"] == "proposal.approve" and row["actor"] == "bob":
        row["actor"] = "erin"
    return row


# --- a normal life ------------------------------------------------------------------------------


def test_a_normal_life_verifies_intact_and_keyed_from_entry_1(kgov, clock, cli, key_file):
    normal_life(kgov, clock)
    report = audit_verify.verify(kgov.store)
    assert report.ok, report.problems
    assert report.keyed_from == 1 and report.key_id == audit_key.load(key_file).id
    assert report.warnings == [] and report.unchecked == []
    with kgov.store.read() as conn:
        entries = conn.execute(sa.select(audit_log.c.key_id, audit_log.c.state)).all()
    assert {e.key_id for e in entries} == {report.key_id} and all(e.state is not None for e in entries)
    result = cli("audit", "verify")
    assert result.code == 0, result.err
    assert f"keyed from entry 1 with key {report.key_id}" in result.out and "warning" not in result.err
    doc = cli("audit", "verify", "--json").json()
    assert doc["ok"] is True and doc["keyed"] is True and doc["problem"] is None


def test_db_init_creates_the_key_file_0600_and_keys_entry_1(store_url, cli, key_file):
    result = cli("db", "init")
    assert result.code == 0, result.err
    assert key_file.exists() and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    key = audit_key.load(key_file)
    assert f"key {key.id}" in result.out and "back this file up apart from the store" in result.out
    with Store(store_url) as store, store.read() as conn:
        first = conn.execute(sa.select(audit_log).where(audit_log.c.seq == 1)).one()
    assert first.action == "store.init" and first.key_id == key.id
    assert cli("audit", "verify").code == 0
    head = cli("audit", "head").out.strip()
    assert head.startswith("1:") and len(head.split(":")[1]) == 64


def test_a_key_file_others_may_read_is_refused_by_verify(kgov, cli, key_file):
    os.chmod(key_file, 0o644)
    result = cli("audit", "verify")
    assert result.code != 0 and "mode 0644" in result.err and str(key_file) in result.err


# --- the attacks --------------------------------------------------------------------------------


def test_deleting_every_row_and_setting_the_head_to_0_is_detected(kgov, clock, cli):
    normal_life(kgov, clock)
    recorded = cli("audit", "head").out.strip()
    with kgov.store.write() as conn:
        conn.execute(sa.delete(audit_log))
        conn.execute(sa.update(governance_state).values(audit_head_seq=0, audit_head_hash=""))
    checked, problem = kgov.audit_verify()
    assert checked == 0 and "every entry was deleted" in problem.problem
    result = cli("audit", "verify")
    assert result.code == 6 and "AUDIT LOG TAMPERED" in result.err and "every entry was deleted" in result.err
    against = cli("audit", "verify", "--expect-head", recorded)
    assert against.code == 6 and "the log ends at entry 0 (it is empty)" in against.err


def test_a_head_reset_to_0_under_an_intact_log_is_refused(kgov, clock):
    normal_life(kgov, clock)
    with kgov.store.write() as conn:
        conn.execute(sa.update(governance_state).values(audit_head_seq=0, audit_head_hash=""))
    checked, problem = kgov.audit_verify()
    assert problem is not None and "shorter than the log" in problem.problem


def test_a_full_rewrite_without_the_key_is_detected(kgov, clock, cli):
    pid = normal_life(kgov, clock)
    recorded = cli("audit", "head").out.strip()
    rewrite(kgov.store, bob_to_erin, key=None)  # every hash recomputed, unkeyed
    with kgov.store.read() as conn:
        approval = conn.execute(sa.select(audit_log).where(audit_log.c.action == "proposal.approve")).one()
    assert approval.actor == "erin" and approval.target == pid
    # without the key this rewrite is a perfect chain: that is the attack
    blind = audit_verify.verify(kgov.store, key=False)
    assert blind.ok and blind.warnings == [audit_verify.UNKEYED_WARNING]
    found = problems(kgov.store)
    assert len(found) == 1 and "no entry is keyed" in found[0] and "without the key" in found[0]
    assert cli("audit", "verify").code == 6
    against = cli("audit", "verify", "--expect-head", recorded)
    assert against.code == 6 and "the log was rewritten" in against.err


def test_a_full_rewrite_with_another_key_is_detected_at_entry_1(kgov, clock):
    normal_life(kgov, clock)
    own = audit.AuditKey(b"mallory's own key, 32 bytes long")
    rewrite(kgov.store, bob_to_erin, key=own)
    report = audit_verify.verify(kgov.store)
    assert not report.ok and report.chain_problem.seq == 1
    assert f"keyed with audit key {own.id}, but the configured key is" in report.problems[0]


def test_a_rewrite_keeping_the_key_ids_is_an_edit(kgov, clock):
    normal_life(kgov, clock)
    with kgov.store.write() as conn:  # relabelled as keyed, hashed with plain sha256
        row = conn.execute(sa.select(audit_log).where(audit_log.c.action == "proposal.approve")).one()
        conn.execute(sa.update(audit_log).where(audit_log.c.seq == row.seq).values(
            actor="erin", hash=audit.entry_hash(row.prev_hash, row.seq, row.at, "erin", row.action, row.target,
                                                row.reason, row.details, state=row.state)))
    report = audit_verify.verify(kgov.store)
    assert report.chain_problem.seq == row.seq and "edited" in report.problems[0]


def test_an_unkeyed_entry_after_keyed_ones_is_detected(kgov, clock, store_url):
    normal_life(kgov, clock)
    audit.use_key(kgov.store.engine.url, None)  # a process without the key file writes
    Governance(kgov.store, clock).grant_role(OPERATOR, "mallory", "admin")
    audit.use_key(kgov.store.engine.url, audit_key.load(audit_key_path()))
    report = audit_verify.verify(kgov.store)
    assert report.chain_problem is not None and "unkeyed after the chain was keyed at entry 1" in report.problems[0]


def audit_key_path():
    from pathlib import Path
    return Path(os.environ["GOVCON_AUDIT_KEY_FILE"])


@pytest.mark.parametrize("edit, named", [
    (lambda conn: state_repo.update_state(conn, command_whitelist=["drop_database"]),
     "state: whitelist is ['drop_database'] in the store"),
    (lambda conn: state_repo.update_state(conn, paused_command_types=[]), None),  # nothing paused: no change
    (lambda conn: state_repo.update_state(conn, kill_switch_engaged=True), "state: killSwitch is True"),
    (lambda conn: state_repo.update_state(conn, current_phase="L5"), "state: phase is 'L5'"),
    (lambda conn: identity_repo.grant(conn, operator="mallory", role="admin", by=OPERATOR, at=T0),
     "roles: mallory holds admin"),
    (lambda conn: conn.execute(sa.delete(role_grants).where(role_grants.c.operator == "bob")),
     "roles: audit entry"),
    (lambda conn: conn.execute(sa.insert(api_tokens).values(
        id="tok-evil", operator=OPERATOR, token_hash=hashlib.sha256(b"mine").hexdigest(), created_at=T0,
        created_by=OPERATOR)), "tokens: token tok-evil for alice is in the store, but no audit entry created it"),
    (lambda conn: conn.execute(sa.update(api_tokens).values(token_hash=hashlib.sha256(b"mine").hexdigest())),
     "secret is not the one audit entry"),
    (lambda conn: conn.execute(sa.text("UPDATE breaker_rules SET min_samples = 1000 WHERE name = 'High Error Rate'")),
     "rules: rule 'High Error Rate' has min_samples = 1000"),
])
def test_state_edited_without_an_audit_entry_is_named(kgov, clock, cli, edit, named):
    normal_life(kgov, clock)
    assert problems(kgov.store) == []
    with kgov.store.write() as conn:
        edit(conn)
    found = problems(kgov.store)
    if named is None:
        assert found == []
        return
    assert any(named in p for p in found), found
    assert kgov.audit_verify()[1] is None  # the chain itself is intact: only the state check finds it
    result = cli("audit", "verify")
    assert result.code == 6 and named in result.err


def test_a_state_edit_hidden_behind_a_later_audited_change_is_named(kgov, clock):
    normal_life(kgov, clock)
    with kgov.store.write() as conn:
        state_repo.update_state(conn, command_whitelist=["drop_database"])
    kgov.grant_role(OPERATOR, "frank", "on-call")  # the next entry records the edited state as its own
    found = problems(kgov.store)
    assert len(found) == 1 and "whitelist changed from [] to ['drop_database']" in found[0]
    assert "'role.grant' does not change it" in found[0]


# --- --expect-head ------------------------------------------------------------------------------


def test_expect_head_holds_while_the_log_grows(kgov, clock, cli):
    normal_life(kgov, clock)
    recorded = cli("audit", "head").out.strip()
    kgov.grant_role(OPERATOR, "frank", "on-call")
    assert cli("audit", "verify", "--expect-head", recorded).code == 0
    assert cli("audit", "verify", "--expect-head", recorded.replace(":", " ")).code == 0


def test_expect_head_finds_a_truncated_log_whose_anchor_was_moved(kgov, clock, cli):
    normal_life(kgov, clock)
    recorded = cli("audit", "head").out.strip()
    seq = int(recorded.split(":")[0])
    with kgov.store.write() as conn:  # drop the newest two entries and move the in-store head with them
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq > seq - 2))
        last = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).one()
        conn.execute(sa.update(governance_state).values(audit_head_seq=last.seq, audit_head_hash=last.hash))
    assert kgov.audit_verify()[1] is None  # consistent inside the store
    result = cli("audit", "verify", "--expect-head", recorded)
    assert result.code == 6
    assert f"the log ends at entry {seq - 2}, shorter than the head recorded earlier" in result.err


def test_expect_head_refuses_a_malformed_head(kgov, cli):
    result = cli("audit", "verify", "--expect-head", "12:nothex")
    assert result.code != 0 and result.code != 6 and "expected SEQ:HASH" in result.err


# --- unkeyed stores -----------------------------------------------------------------------------


def test_an_unkeyed_store_verifies_with_a_warning_and_key_init_keys_it(gov, clock, cli, key_file):
    gov.grant_role(OPERATOR, "bob", "tech-lead")
    result = cli("audit", "verify")
    assert result.code == 0 and "warning: audit chain unkeyed: a database writer can rewrite it" in result.err
    from console.identity import current_operator
    gov.grant_role(OPERATOR, current_operator(), "admin")
    keyed = cli("audit", "key", "init")
    assert keyed.code == 0, keyed.err
    assert "the chain is keyed from entry 4 on" in keyed.out and key_file.exists()
    with gov.store.read() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    assert [r.key_id != "" for r in rows] == [False, False, False, True, True]
    assert rows[3].action == audit.KEYED_ACTION and rows[3].details["keyId"] == audit_key.load(key_file).id
    again = cli("audit", "verify")
    assert again.code == 0 and "keyed from entry 4" in again.out and "warning" not in again.err
    assert "already" in cli("audit", "key", "init").out


def test_entries_before_0012_are_checked_as_far_as_they_go(gov, clock):
    gov.grant_role(OPERATOR, "bob", "tech-lead")
    with gov.store.write() as conn:  # as a store migrated from before 0012 has them
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
        prev = audit.GENESIS
        for r in rows:
            digest = audit.entry_hash(prev, r.seq, r.at, r.actor, r.action, r.target, r.reason, r.details)
            conn.execute(sa.update(audit_log).where(audit_log.c.seq == r.seq).values(state=None, prev_hash=prev,
                                                                                     hash=digest))
            prev = digest
        conn.execute(sa.update(governance_state).values(audit_head_hash=prev))
    report = audit_verify.verify(gov.store)
    assert report.ok and any("no entry records the state" in u for u in report.unchecked)
    gov.grant_role(OPERATOR, "carol", "ops-lead")
    report = audit_verify.verify(gov.store)
    assert report.ok and any("before entry 3" in u for u in report.unchecked)


# --- anchoring ----------------------------------------------------------------------------------


def test_the_anchor_job_appends_the_head_to_its_file(kgov, clock, tmp_path):
    anchor_file = tmp_path / "anchors" / "audit-head.log"
    sched = GovconScheduler(kgov, "test", audit_anchor=AnchorSettings(file=anchor_file))
    sched.is_leader = True
    job = sched._guard("audit-anchor", sched.anchor_audit)
    job()
    kgov.grant_role(OPERATOR, "frank", "on-call")
    clock.advance(timedelta(hours=1))
    job()
    lines = anchor_file.read_text().splitlines()
    assert len(lines) == 2 and stat.S_IMODE(os.stat(anchor_file).st_mode) == 0o600
    with kgov.store.read() as conn:
        seq, digest = audit.head(conn)
    assert lines[1].split()[1] == f"{seq}:{digest}" and lines[0].split()[1].startswith(f"{seq - 1}:")
    assert sched.runs == ["audit-anchor", "audit-anchor"]
    assert audit_verify.verify(kgov.store, expect_head=lines[0].split()[1]).ok
    follower = GovconScheduler(kgov, "other", audit_anchor=AnchorSettings(file=anchor_file))
    follower._guard("audit-anchor", follower.anchor_audit)()  # not the leader: writes nothing
    assert len(anchor_file.read_text().splitlines()) == 2


def test_the_anchor_job_sends_the_head_as_a_low_info_alert(store, clock, key_file):
    audit.use_key(store.engine.url, audit_key.create(key_file))
    sinks = [{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}]
    from engine.alerts import load_sinks
    gov = Governance(store, clock, sinks=load_sinks({"sinks": sinks}))
    gov.init_store(OPERATOR)
    doc = GovconScheduler(gov, "t", audit_anchor=AnchorSettings(alert=True)).anchor_audit()
    with store.read() as conn:
        rows = conn.execute(sa.text("SELECT severity, kind, title FROM alert_outbox")).all()
    assert [(r.severity, r.kind) for r in rows] == [("low", "info")]
    assert rows[0].title == f"Audit head 1:{doc['hash'][:12]}"
    audit.use_key(store.engine.url, None)


def test_the_anchor_is_configured_in_the_audit_table(tmp_path):
    cfg = Config(database_url="x", path=tmp_path / "c.toml",
                 raw={"audit": {"anchor_file": str(tmp_path / "a.log"), "anchor_interval": "15m",
                                "anchor_alert": True}})
    anchor = cfg.scheduler_options()["audit_anchor"]
    assert anchor == AnchorSettings(file=tmp_path / "a.log", alert=True, interval=timedelta(minutes=15))
    assert "audit_anchor" not in Config(database_url="x", raw={}).scheduler_options()
    with pytest.raises(Exception, match=r"\[audit\] has unknown key 'anchor'"):
        Config(database_url="x", raw={"audit": {"anchor": "x"}}).audit_anchor()
    assert json.dumps(str(cfg.audit_key_path()))  # a path, whatever the environment


def test_the_anchor_job_is_scheduled_with_its_id_and_interval_only_when_configured(kgov, tmp_path):
    import asyncio

    async def main(settings):
        s = GovconScheduler(kgov, "test-holder", audit_anchor=settings)
        s.start()
        try:
            job = s.scheduler.get_job("audit-anchor")
            return None if job is None else (job.func.__name__, job.trigger.interval)
        finally:
            s.shutdown()
    settings = AnchorSettings(file=tmp_path / "a.log", interval=timedelta(minutes=15))
    assert asyncio.run(main(settings)) == ("audit-anchor", timedelta(minutes=15))
    assert asyncio.run(main(None)) is None
    assert asyncio.run(main(AnchorSettings())) is None  # neither a file nor the alert


def test_audit_key_show_names_the_file_and_the_key_id(kgov, cli, key_file):
    doc = cli("audit", "key", "show", "--json").json()
    assert doc == {"path": str(key_file), "exists": True, "keyId": audit_key.load(key_file).id}
    assert audit_key.load(key_file).id not in key_file.read_text()  # the id is not the key


def test_a_whitelist_edit_before_an_approval_is_named_at_the_approval(kgov, clock):
    make_ready(kgov, clock)
    pid = kgov.cycle.run(OPERATOR)["proposal"]["proposalId"]
    with kgov.store.write() as conn:  # slipped in before the approval, which keeps what it finds
        state_repo.update_state(conn, command_whitelist=["drop_database"])
    kgov.proposals.approve("bob", pid, "tech-lead")
    found = problems(kgov.store)
    assert len(found) == 1 and "whitelist changed from [] to ['drop_database']" in found[0], found
    assert "'proposal.approve' does not change it" in found[0]


def test_a_kill_switch_released_by_sql_and_engaged_again_is_named(kgov, clock):
    kgov.grant_role(OPERATOR, OPERATOR, "incident-commander")
    assert kgov.overrides.engage_kill_switch(OPERATOR, "incident").changed
    with kgov.store.write() as conn:  # agents run again for a while...
        state_repo.update_state(conn, kill_switch_engaged=False)
    assert any("killSwitch is False in the store" in p for p in problems(kgov.store))
    assert kgov.overrides.engage_kill_switch(OPERATOR, "still the incident").changed  # ...then it is re-engaged
    found = problems(kgov.store)
    assert len(found) == 1, found
    assert found[0].startswith("state: audit entry ") and "('kill_switch.engage' by 'alice') found the kill " \
        "switch engaged already, as the log had left it at entry " in found[0]
    assert found[0].endswith("it was flipped without an audit entry in between")
