"""How the console starts: the embedded scheduler starts only once the first dashboard is on the screen
(its imports would otherwise delay the operator's first look) and then takes part in the leader lease like
any holder."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from console.app import make_app
from screens.header import StatusHeader
from storage import state_repo
from tests.pilot.conftest import notifications, settle, text_of
from tests.pilot.seed import OPERATOR

pytestmark = pytest.mark.anyio


async def _until(pilot, condition, seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{condition} never held within {seconds} s")


async def test_the_scheduler_starts_after_the_first_complete_dashboard_and_stands_by(console_gov, monkeypatch):
    import screens.app as app_module
    monkeypatch.setattr(app_module, "AFTER_LAUNCH_LATEST", 60.0)  # so only the dashboard's Completed starts it
    made_when_complete: list[bool] = []  # was the dashboard complete when the scheduler was made?
    real_make = app_module.make_scheduler

    def make_scheduler(gov, operator):
        made_when_complete.append(getattr(app.screen, "completed_at", None) is not None)
        return real_make(gov, operator)
    monkeypatch.setattr(app_module, "make_scheduler", make_scheduler)
    app = make_app(console_gov, operator=OPERATOR)  # the scheduler, as `govcon` runs it
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.scheduler is None
        await _until(pilot, lambda: app.scheduler is not None and app.scheduler.scheduler is not None)
        assert made_when_complete == [True]
        # carol's console holds the lease in the seeded store (until T0 + 30 s): this one stands by
        await _until(pilot, lambda: "standby" in text_of(app.screen.query_one(StatusHeader)))
        assert not app.scheduler.is_leader
        assert "leader console:carol@ops-1:4242" in text_of(app.screen.query_one(StatusHeader))


async def test_the_console_takes_a_free_lease_once_its_scheduler_starts(console_gov, console_clock):
    console_clock.advance(timedelta(minutes=1))  # carol's lease has expired
    app = make_app(console_gov, operator=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: app.scheduler is not None and app.scheduler.is_leader)
        with console_gov.store.read() as conn:
            holder = state_repo.get_lease(conn, "scheduler").holder
        assert holder == app.scheduler.holder and holder.startswith(f"console:{OPERATOR}@")
        await _until(pilot, lambda: "this console leads the scheduler" in text_of(app.screen.query_one(StatusHeader)))
    with console_gov.store.read() as conn:  # quitting releases it for the next holder
        assert state_repo.get_lease(conn, "scheduler") is None


async def test_what_waits_for_the_first_dashboard_runs_once_after_it(console_gov, monkeypatch):
    import screens.app as app_module
    monkeypatch.setattr(app_module, "AFTER_LAUNCH_LATEST", 60.0)  # only the dashboard's Completed
    calls: list[bool] = []  # was the dashboard complete when the hook ran?
    app = make_app(console_gov, operator=OPERATOR, scheduler=False,
                   launched=lambda: calls.append(app.screen.completed_at is not None))
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: calls)
        assert calls == [True]
        app._after_launch()  # the deadline's timer, firing later
        await settle(pilot)
        assert len(calls) == 1


async def test_what_waits_for_the_first_dashboard_runs_at_the_deadline_if_it_never_completes(
        console_gov, console_url, monkeypatch):
    import screens.app as app_module
    monkeypatch.setattr(app_module, "AFTER_LAUNCH_LATEST", 0.5)
    db = Path(console_url)
    aside = db.with_name("aside")
    aside.mkdir()
    for f in db.parent.glob(db.name + "*"):
        f.rename(aside / f.name)
    db.mkdir()  # the store is unreachable from the start: no dashboard ever completes
    console_gov.store.engine.dispose()
    calls: list[float] = []
    app = make_app(console_gov, operator=OPERATOR, launched=lambda: calls.append(time.perf_counter()))
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: calls and app.scheduler is not None, seconds=5)
        assert app.screen.completed_at is None and len(calls) == 1


async def test_a_scheduler_that_cannot_be_built_is_reported_not_silently_missing(console_gov, monkeypatch):
    import screens.app as app_module

    def broken(gov, operator):
        raise RuntimeError("no timezone database")
    monkeypatch.setattr(app_module, "make_scheduler", broken)
    app = make_app(console_gov, operator=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: "scheduler failed" in text_of(app.screen.query_one(StatusHeader)))
        assert app.scheduler is None
        assert any(title == "Scheduler failed" and "no timezone database" in message and severity == "error"
                   for title, message, severity in notifications(app))


async def test_the_console_as_govcon_runs_it_resumes_the_collector_after_the_first_dashboard(console_gov, monkeypatch):
    """console_app (what run_console runs): the entry point's paused collector is resumed through the
    app's launched hook once the first dashboard is complete (a spy stands in for startup.resume, so this
    test process's own collector is left alone)."""
    import screens.app as app_module
    from console import app as console_app_module
    from console import startup
    monkeypatch.setattr(app_module, "AFTER_LAUNCH_LATEST", 60.0)
    resumed: list[bool] = []  # was the dashboard complete when the collector was resumed?
    monkeypatch.setattr(startup, "resume", lambda: resumed.append(app.screen.completed_at is not None))
    app = console_app_module.console_app(console_gov, operator=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: resumed)
        assert resumed == [True]
