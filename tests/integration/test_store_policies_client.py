"""`govcon policies …` and `govcon alerts sinks …` through a real `govcon serve --socket` (client mode): the
same output and exit codes as embedded, the service acting as the socket's caller; `db import-config` is
for the server's host."""

from __future__ import annotations

import pytest

from tests.integration.test_server_mode import same, sides  # noqa: F401  (sides: the twin stores' fixture)

STEPS = [
    ("policies", "list"),
    ("policies", "set", "restarts", "--command-types", "restart_service", "--max-per-day", "2", "--json"),
    ("policies", "set", "restarts", "--max-per-day", "-1"),
    ("policies", "show", "restarts"),
    ("alerts", "sinks", "set", "hook", "--kind", "webhook", "--url", "-"),
    ("alerts", "sinks", "list", "--json"),
    ("alerts", "sinks", "show", "hook"),
    ("alerts", "sinks", "delete", "hook"),
    ("policies", "delete", "restarts"),
    ("policies", "show", "restarts"),
]


def test_policies_and_sinks_are_the_same_through_the_service(sides):  # noqa: F811
    for args in STEPS:
        res = same(sides, *args, input_for=lambda _side: "https://hooks.example.com/services/T0/SECRETPART\n")
        assert "SECRETPART" not in res.stdout + res.stderr


@pytest.mark.parametrize("args", [("db", "import-config")])
def test_import_config_runs_on_the_servers_host(sides, args):  # noqa: F811
    _embedded, client = sides
    res = client.run(*args)
    assert res.returncode != 0 and "run it on the server's host" in res.stderr
