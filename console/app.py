"""The Textual console: `make_app` is the one factory the CLI, the demo and the tests share."""

from __future__ import annotations

from engine.governance import Governance


def make_app(gov: Governance, *, operator: str, demo: bool = False):
    from screens.app import GovconApp
    return GovconApp(gov, operator=operator, demo=demo)


def run_console(gov: Governance, *, operator: str, demo: bool = False) -> int:
    if not gov.is_initialised():
        from engine.errors import NotInitialised
        raise NotInitialised()
    make_app(gov, operator=operator, demo=demo).run()
    return 0
