"""One kill-switch command path (issue 17 pt 2): the CLI, the HTTP API and the console all call
``Overrides.kill_switch(action, actor, reason)``, which alone decides engage, release and drill. A second
decision anywhere (a CLI or route calling engage/release/drill itself) would show here as a call that did
not go through it."""

from __future__ import annotations

import inspect

import pytest

from engine.overrides import Overrides
from tests.integration.test_api import make_api
from tests.integration.test_cli_safety import operator_roles  # noqa: F401 - a fixture


@pytest.fixture
def calls(monkeypatch):
    seen: list[tuple[str, str]] = []
    real = Overrides.kill_switch

    def recording(self, action, actor, reason):
        seen.append((action, actor))
        return real(self, action, actor, reason)
    monkeypatch.setattr(Overrides, "kill_switch", recording)
    return seen


def test_cli_and_api_engage_release_and_drill_through_one_entry(gov, cli, calls, operator_roles):  # noqa: F811
    me = operator_roles
    for action, reason in (("engage", "from the cli"), ("release", "done"), ("drill", None)):
        args = ["kill-switch", action] + (["--reason", reason] if reason else [])
        assert cli(*args).code == 0, action
    api = make_api(gov)
    with api.client:
        headers = api.auth(me)
        for action, reason in (("engage", "over http"), ("release", "done"), ("drill", "monthly")):
            response = api.post("/api/kill-switch", json={"action": action, "reason": reason}, headers=headers)
            assert response.status_code == 200, response.text
    assert calls == [(a, me) for a in ("engage", "release", "drill")] * 2


def test_the_console_dispatches_to_the_same_entry():
    """The console's kill-switch action (screens/actions.py) calls it for engage and release (its drill is
    the CLI's and the API's); no screen calls engage/release/drill directly."""
    import screens.actions as actions
    source = inspect.getsource(actions)
    assert 'gov.overrides.kill_switch("engage"' in source and 'gov.overrides.kill_switch("release"' in source
    for direct in ("overrides.engage(", "overrides.release_kill_switch(", "overrides.drill(",
                   "overrides.engage_kill_switch("):
        assert direct not in source
