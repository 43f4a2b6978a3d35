"""The Textual console: `make_app` is the one factory the CLI, the demo and the tests share."""

from __future__ import annotations

from console import startup
from engine.clock import Clock
from engine.errors import NotInitialised
from engine.governance import Governance


def make_app(gov: Governance, *, operator: str, demo: bool = False, clock: Clock | None = None,
             scheduler: bool = True, refresh_seconds: float | None = None, launched=None):
    """The console on ``gov``'s store. ``clock`` (default: the governance clock) must be the one ``gov``
    reads; tests pass a ManualClock-driven gov and ``scheduler=False``."""
    from screens.app import GovconApp  # deferred: Textual and Rich only when the console runs
    if clock is not None and clock is not gov.clock:
        raise ValueError("make_app: clock must be the Governance's own clock (build the Governance with it)")
    extra = {} if refresh_seconds is None else {"refresh_seconds": refresh_seconds}
    return GovconApp(gov, operator=operator, demo=demo, scheduler=scheduler, launched=launched, **extra)


def console_app(gov: Governance, *, operator: str, demo: bool = False):
    """The console as `govcon` runs it: the garbage collector (paused by the entry point) resumes once the
    first dashboard is on the screen."""
    # client mode (console/client.py): the service runs the scheduled jobs; this console only reads and acts
    return make_app(gov, operator=operator, demo=demo, launched=startup.resume,
                    scheduler=not getattr(gov, "remote", False))


def run_console(gov: Governance, *, operator: str, demo: bool = False) -> int:
    if not gov.is_initialised():
        raise NotInitialised()
    console_app(gov, operator=operator, demo=demo).run()
    return 0
