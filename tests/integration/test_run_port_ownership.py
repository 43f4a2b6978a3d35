"""`govcon run`'s port acts only on grants its caller holds (engine/runner.py GovernancePort, engine/actions.py).

The govcon service builds the port per call with the caller as its actor (console/rpc_server.py ``_run_port``:
``GovernancePort(gov, operator)``), and admits any role to it, the agent role included. A caller holding only
the agent role could attach a forged report to another agent's grant, release (cancel) a human-approved grant
and page on-call about a grant that does not exist. Here the port is built as the service builds it, for a caller
holding only the agent role, on both stores: a grant-scoped call on a grant the caller does not hold is refused
(PermissionDenied naming the grant and who holds it) and changes nothing; a grant that does not exist is
NotFound, with no alert and no audit entry; the caller's own grants work as before; a human who could have
decided the grant's action request may still release it (audited in that human's name), and nothing more.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.alerts import load_sinks
from engine.errors import NotFound, PermissionDenied
from engine.governance import Governance
from engine.policies import load_policies
from engine.runner import GovernancePort, RunPlan
from storage import outbox_repo, state_repo
from storage.actions_repo import OPEN
from tests.conftest import OPERATOR

DEPLOY_BOT = "deploy-bot"   # the agent the human-approved grant is for
ROOT = "root"               # who asked for it
APPROVER = "olivia"         # ops-lead: decided the request; may release the grant
BYSTANDER = "tess"          # tech-lead: a human, but not one who could decide these requests
MALLORY = "mallory"         # holds only the agent role
POLICIES = {
    "deploys": {"command_types": ["code_deployment"], "requires_approval": True},
    "service_restart": {"command_types": ["restart_service"]},
}
ROLES = {DEPLOY_BOT: "agent", ROOT: "on-call", APPROVER: "ops-lead", BYSTANDER: "tech-lead", MALLORY: "agent"}
FORGED = {"outcome": "succeeded", "exitCode": 0,
          "steps": [{"name": "command", "exitCode": 0, "outputTail": "all fine (forged)"}]}
RESTART = RunPlan(command_type="restart_service", command=("true",), service="api")
DEPLOY = RunPlan(command_type="code_deployment", command=("true",), service="api")


@pytest.fixture
def pgov(store, clock):
    """L4 with both types whitelisted; a webhook sink (nothing listens: an escalation stays in the outbox)."""
    g = Governance(store, clock, policies=load_policies(POLICIES), sinks=load_sinks(
        {"sinks": [{"name": "oncall-hook", "type": "webhook", "url": "http://127.0.0.1:9/hook", "timeout": 0.5}]}))
    g.init_store(OPERATOR, phase_started=clock.now(), policies=load_policies(POLICIES))
    with g.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service", "code_deployment"])
    for who, role in ROLES.items():
        g.grant_role(OPERATOR, who, role)
    yield g
    g.close()


def port(gov: Governance, actor: str) -> GovernancePort:
    """As console/rpc_server.py RpcService._run_port builds it for each call."""
    return GovernancePort(gov, actor)


def approved_grant(gov: Governance) -> str:
    """deploy-bot's deploy: asked for by root, approved by a human (the reviewer's grant)."""
    asked = port(gov, ROOT).decide(RunPlan(command_type="code_deployment", command=("true",), service="api",
                                           agent=DEPLOY_BOT), request=True, take_grant=True)
    assert asked["decision"] == "needs_approval", asked
    doc = gov.actions.approve(APPROVER, asked["requestId"])
    grant = doc["grant"]
    assert grant["agent"] == DEPLOY_BOT and grant["requestedBy"] == ROOT and grant["status"] == OPEN
    return grant["grantId"]


def own_grant(gov: Governance, actor: str, plan: RunPlan = RESTART) -> str:
    decided = port(gov, actor).decide(plan, request=False, take_grant=True)
    assert decided["decision"] == "allow", decided
    return decided["grantId"]


def grant(gov: Governance, gid: str) -> dict[str, Any]:
    return gov.actions.show(gid)["grant"]


def audited(gov: Governance, target: str) -> list[tuple[str, str]]:
    return [(e["action"], e["actor"]) for e in reversed(gov.audit_entries(limit=200)) if e["target"] == target]


def pages(gov: Governance, gid: str | None = None) -> int:
    """Escalations queued (for grant ``gid``, or any)."""
    with gov.store.read() as conn:
        rows = outbox_repo.list_rows(conn)
    return sum(1 for r in rows if r.dedup_key.startswith(f"govcon-rollback-failed-{gid or ''}"))


def refused(exc: pytest.ExceptionInfo, gid: str, caller: str) -> None:
    text = str(exc.value)
    assert gid in text and caller in text and DEPLOY_BOT in text and ROOT in text, text


# --- another caller's grant: refused, unchanged -----------------------------------------------------------


def test_an_agent_cannot_replace_the_report_of_another_callers_grant(pgov):
    gid = approved_grant(pgov)
    port(pgov, DEPLOY_BOT).attach_report(gid, {"outcome": "succeeded", "exitCode": 0, "steps": []})  # its agent's
    before = grant(pgov, gid)["report"]
    with pytest.raises(PermissionDenied) as exc:
        port(pgov, MALLORY).attach_report(gid, FORGED)
    refused(exc, gid, MALLORY)
    assert grant(pgov, gid)["report"] == before
    assert (("action.report", MALLORY)) not in audited(pgov, gid)


def test_an_agent_cannot_release_another_callers_approved_grant(pgov):
    gid = approved_grant(pgov)
    with pytest.raises(PermissionDenied) as exc:
        port(pgov, MALLORY).release(gid, "not needed (forged)")
    refused(exc, gid, MALLORY)
    assert grant(pgov, gid)["status"] == OPEN
    assert [a for a, _ in audited(pgov, gid)] == ["action.grant"]
    # the grant's own run still reports its outcome (refused after a release)
    port(pgov, ROOT).report_outcome(gid, DEPLOY, "succeeded")
    assert grant(pgov, gid)["status"] == "succeeded"


def test_an_agent_cannot_report_the_outcome_of_another_callers_grant(pgov):
    gid = approved_grant(pgov)
    with pytest.raises(PermissionDenied) as exc:
        port(pgov, MALLORY).report_outcome(gid, DEPLOY, "failed")
    refused(exc, gid, MALLORY)
    assert grant(pgov, gid)["status"] == OPEN


def test_an_agent_cannot_escalate_another_callers_grant(pgov):
    gid = approved_grant(pgov)
    with pytest.raises(PermissionDenied) as exc:
        port(pgov, MALLORY).escalate(gid, DEPLOY, "ROLLBACK FAILED (forged)", "call 555-0100", {"note": "forged"})
    refused(exc, gid, MALLORY)
    assert pages(pgov, gid) == 0
    assert [a for a, _ in audited(pgov, gid)] == ["action.grant"]


def test_escalating_a_grant_that_does_not_exist_pages_nobody(pgov):
    before = len(pgov.audit_entries(limit=500))
    with pytest.raises(NotFound) as exc:
        port(pgov, MALLORY).escalate("grt-doesnotexist", RESTART, "ROLLBACK FAILED on prod-db: page from nowhere",
                                     "ignore the runbook, call 555-0100", {"note": "forged"})
    assert "grt-doesnotexist" in str(exc.value)
    assert pages(pgov) == 0
    with pgov.store.read() as conn:
        assert outbox_repo.list_rows(conn) == []  # nothing at all was queued
    assert audited(pgov, "grt-doesnotexist") == []
    assert len(pgov.audit_entries(limit=500)) == before


@pytest.mark.parametrize("call", ["release", "attach_report", "report_outcome"])
def test_a_grant_that_does_not_exist_is_not_found(pgov, call):
    p = port(pgov, MALLORY)
    with pytest.raises(NotFound):
        {"release": lambda: p.release("gr-doesnotexist", "x"),
         "attach_report": lambda: p.attach_report("gr-doesnotexist", FORGED),
         "report_outcome": lambda: p.report_outcome("gr-doesnotexist", RESTART, "succeeded")}[call]()


# --- the caller's own grants: as before ---------------------------------------------------------------------


def test_an_agents_own_grant_still_takes_its_outcome_escalation_and_report(pgov):
    me = port(pgov, MALLORY)
    gid = own_grant(pgov, MALLORY)
    assert grant(pgov, gid)["requestedBy"] == MALLORY
    me.report_outcome(gid, RESTART, "failed")
    me.escalate(gid, RESTART, f"ROLLBACK FAILED: restart_service ({gid})", "the rollback failed", {"grantId": gid})
    me.attach_report(gid, {"outcome": "failed", "exitCode": 14, "steps": []})
    doc = grant(pgov, gid)
    assert doc["status"] == "failed" and doc["report"]["exitCode"] == 14
    assert pages(pgov, gid) == 1
    assert audited(pgov, gid) == [("action.grant", "gate"), ("action.escalate", MALLORY),
                                  ("action.report", MALLORY)]
    unused = own_grant(pgov, MALLORY)
    me.release(unused, "a check failed: nothing ran")
    assert grant(pgov, unused)["status"] == "released"
    assert audited(pgov, unused)[-1] == ("action.release", MALLORY)


def test_the_grants_agent_holds_it_too(pgov):
    """root asked for deploy-bot: deploy-bot, the agent the grant lets act, may report on it."""
    gid = approved_grant(pgov)
    bot = port(pgov, DEPLOY_BOT)
    bot.report_outcome(gid, DEPLOY, "succeeded")
    bot.attach_report(gid, {"outcome": "succeeded", "exitCode": 0, "steps": []})
    assert grant(pgov, gid)["status"] == "succeeded" and grant(pgov, gid)["report"]["exitCode"] == 0


# --- humans ---------------------------------------------------------------------------------------------


def test_a_human_who_could_decide_the_request_may_release_the_grant_and_nothing_more(pgov):
    gid = approved_grant(pgov)
    with pytest.raises(PermissionDenied) as exc:  # a human without an approver role: no
        port(pgov, BYSTANDER).release(gid, "not needed")
    assert gid in str(exc.value) and "ops-lead" in str(exc.value)
    with pytest.raises(PermissionDenied):  # the report and the outcome are the holder's evidence only
        port(pgov, APPROVER).attach_report(gid, FORGED)
    with pytest.raises(PermissionDenied):
        port(pgov, APPROVER).report_outcome(gid, DEPLOY, "succeeded")
    assert grant(pgov, gid)["status"] == OPEN
    port(pgov, APPROVER).release(gid, "cancelled: the deploy window closed")
    assert grant(pgov, gid)["status"] == "released"
    assert audited(pgov, gid)[-1] == ("action.release", APPROVER)


def test_an_unrequested_grant_is_released_by_its_policys_approvers(pgov):
    """A grant the gate allowed on its own: the roles its policy would ask (the default approvers here)."""
    gid = own_grant(pgov, DEPLOY_BOT)
    with pytest.raises(PermissionDenied):
        port(pgov, MALLORY).release(gid, "forged")
    port(pgov, ROOT).release(gid, "on-call: not now")  # on-call is among the default approver roles
    assert grant(pgov, gid)["status"] == "released"


# --- the same through the govcon service (socket and POST /api/rpc answer through RpcService) --------------


def test_the_reviewers_calls_through_the_service_are_refused(pgov):
    from console.rpc_server import RpcService
    service = RpcService(pgov, address="test")
    gid = approved_grant(pgov)

    def call(*args: Any, **kw: Any) -> dict[str, Any]:
        frame, _ = service.answer(MALLORY, {"m": "run_port", "a": list(args), "k": kw})
        return frame

    for frame in (call("attach_report", gid, FORGED), call("release", gid, "not needed (forged)")):
        assert frame["e"]["type"] == "PermissionDenied", frame
    frame = call("escalate", "grt-doesnotexist", "ROLLBACK FAILED on prod-db: page from nowhere",
                 "ignore the runbook, call 555-0100", {"note": "forged"},
                 plan={"command_type": "restart_service", "command": ["true"]})
    assert frame["e"]["type"] == "NotFound", frame
    assert grant(pgov, gid)["status"] == OPEN and grant(pgov, gid)["report"] is None
    assert pages(pgov) == 0
    assert not [e for e in pgov.audit_entries(limit=500) if e["action"] in ("action.escalate", "action.report",
                                                                            "action.release")]
