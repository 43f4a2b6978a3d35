"""Text no store can keep (NUL, lone surrogates) is refused with 422 naming the field, on both stores.

On PostgreSQL a NUL in a kill-switch reason was a 500 and the switch was not engaged; the same in a
path id was a 500 from the lookup."""

from __future__ import annotations

import json

import pytest

from tests.conftest import OPERATOR
from tests.integration.test_api import api, make_api  # noqa: F401 - the fixture

BAD_TEXT = [pytest.param("stop\x00now", ("NUL",), id="nul"), pytest.param("stop\ud800now", ("surrogate", "unicode"), id="surrogate")]


def post_raw(api, path: str, doc: dict, headers: dict):
    """json.dumps escapes the surrogate as \\ud800, exactly what a client's JSON encoder sends."""
    return api.post(path, content=json.dumps(doc), headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize("reason, named", BAD_TEXT)
def test_a_kill_switch_reason_no_store_can_keep_is_a_422_and_a_clean_one_engages(api, reason, named):
    api.gov.grant_role(OPERATOR, "dave", "on-call")
    headers = api.auth("dave")
    refused = post_raw(api, "/api/kill-switch", {"action": "engage", "reason": reason}, headers)
    assert refused.status_code == 422, refused.text
    assert "body.reason" in refused.json()["detail"] and any(word in refused.json()["detail"] for word in named)
    assert api.gov.status()["killSwitch"]["engaged"] is False
    engaged = post_raw(api, "/api/kill-switch", {"action": "engage", "reason": "stop now"}, headers)
    assert engaged.status_code == 200 and engaged.json()["killSwitch"]["engaged"] is True


@pytest.mark.parametrize("reason, named", BAD_TEXT)
def test_revert_and_reject_refuse_the_same_text(api, reason, named):
    api.gov.grant_role(OPERATOR, "dave", "on-call")
    headers = api.auth("dave")
    before = len(api.gov.audit_entries(limit=1000))
    for path in ("/api/governance/revert", "/api/governance/proposals/p-1/reject"):
        refused = post_raw(api, path, {"reason": reason}, headers)
        assert refused.status_code == 422, (path, refused.text)
        assert "body.reason" in refused.json()["detail"] and any(word in refused.json()["detail"] for word in named)
    assert len(api.gov.audit_entries(limit=1000)) == before  # nothing was written


@pytest.mark.parametrize("path", ["/api/governance/proposals/p%00x", "/api/actions/a%00x",
                                  "/api/governance/proposals/p%ED%A0%80x"])
def test_a_path_id_no_store_can_keep_is_a_422_not_a_500(api, path):
    answer = api.get(path)
    assert answer.status_code in (404, 422), answer.text
    if "%00" in path:
        assert answer.status_code == 422 and "NUL" in answer.json()["detail"]


def test_a_clean_unknown_path_id_is_still_a_404(api):
    answer = api.get("/api/governance/proposals/no-such-proposal")
    assert answer.status_code == 404 and "no-such-proposal" in answer.json()["detail"]
