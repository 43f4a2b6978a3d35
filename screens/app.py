"""GovconApp: the operator console. Eight screens as modes (keys 1-8), the contract's keys at app level
(the key bar, `?` help and the command palette share one table), live data read in worker threads every
second, and every change made through the Governance facade in a worker, its outcome a notification."""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen

from engine.governance import Governance
from screens.actions import ActionsMixin
from screens.base import GovScreen
from screens.dashboard import DashboardScreen
from screens.data import LiveData, SlowData, load_live, load_slow
from screens.errors import describe_error, error_title
from screens.keys import KEYS, bindings
from screens.logs import StderrLogsAside
from storage.db import StoreUnavailable

REFRESH_SECONDS = 1.0
SLOW_EVERY = 5          # readiness and trends every 5 refreshes
AFTER_LAUNCH_LATEST = 2.0  # seconds after mount: what waits for the first dashboard waits no longer
TOAST_SECONDS = 4.0        # a toast is a glance: what it says stays on screen (header, lists, audit log)
TOAST_ERROR_SECONDS = 8.0  # a refusal says why and what to do: a little longer to read


def _lazy_screen(module: str, name: str) -> Callable[[], Screen]:
    """A mode's screen, imported after launch: the dashboard comes first, and the other six (Markdown,
    the rule editor, ...) would add ~40 ms of imports to every launch. A worker imports them once the
    first dashboard is on the screen (GovconApp._after_launch), so the first `2`...`7` rarely pays it."""
    def make() -> Screen:
        return getattr(importlib.import_module(module), name)()
    make.__qualname__ = name
    make.module = module  # type: ignore[attr-defined]
    return make


def super_commands(commands: Iterable[SystemCommand], ours: set[str]) -> Iterable[SystemCommand]:
    """Textual's own palette commands, less those the console already offers under the same title."""
    return (c for c in commands if c.title not in ours)


def _import_screens(modules: Iterable[str]) -> None:
    for module in modules:
        importlib.import_module(module)



def make_scheduler(gov: Governance, operator: str) -> Any:
    """engine.jobs.GovconScheduler holding the lease as ``console:OPERATOR@HOST:PID`` (imported here, in the
    scheduler's worker: APScheduler costs ~150 ms of imports the first paint need not wait for)."""
    from engine.jobs import GovconScheduler, default_holder
    return GovconScheduler(gov, default_holder("console", operator))

class GovconApp(ActionsMixin, App):
    CSS_PATH = "app.tcss"
    TITLE = "govcon"
    MODES: ClassVar[dict[str, str | Callable[[], Screen]]] = {
        "dashboard": DashboardScreen,
        "events": _lazy_screen("screens.events", "EventsScreen"),
        "readiness": _lazy_screen("screens.readiness", "ReadinessScreen"),
        "proposals": _lazy_screen("screens.proposals", "ProposalsScreen"),
        "rules": _lazy_screen("screens.rules", "RulesScreen"),
        "reports": _lazy_screen("screens.reports", "ReportsScreen"),
        "audit": _lazy_screen("screens.audit", "AuditScreen"),
        "actions": _lazy_screen("screens.action_queue", "ActionQueueScreen"),
    }
    BINDINGS: ClassVar[list[BindingType]] = bindings()
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    class LiveLoaded(Message):
        def __init__(self, live: LiveData) -> None:
            super().__init__()
            self.live = live

    class SlowLoaded(Message):
        def __init__(self, slow: SlowData) -> None:
            super().__init__()
            self.slow = slow

    class SchedulerMade(Message):
        def __init__(self, scheduler: Any, error: str | None = None) -> None:
            super().__init__()
            self.scheduler, self.error = scheduler, error

    def __init__(self, gov: Governance, *, operator: str, demo: bool = False, scheduler: bool = True,
                 refresh_seconds: float = REFRESH_SECONDS,
                 launched: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.gov = gov
        self.operator = operator
        self.demo = demo
        self.refresh_seconds = refresh_seconds
        self.want_scheduler = scheduler
        self.scheduler = None
        self._scheduler_missing: str | None = None  # why there is no scheduler, as the header says it
        self.live: LiveData | None = None
        self.slow: SlowData | None = None
        self._busy: set[str] = set()
        self._again: dict[str, Callable[[], object]] = {}  # one more read of a key once the running one ends
        self._busy_lock = threading.Lock()
        self._ticks = 0
        self._seen_events: set[str] | None = None
        self._kill_switch_seen: bool | None = None
        self._kill_switch_mine: bool | None = None  # the state this console's own engage/release will show
        self._jobs: list[tuple[str, Callable[[], None]]] = []
        self._logs = StderrLogsAside(self)
        self._launched = launched  # called once the first dashboard is on the screen (run_console: the GC)
        self._after_launch_done = False

    # --- lifecycle ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.sub_title = f"{self.operator} @ {self.gov.store.display_url}"
        self._logs.enter()
        self.set_timer(AFTER_LAUNCH_LATEST, self._after_launch)
        self.refresh_data(slow=True)
        self.set_interval(self.refresh_seconds, self.tick)
        self.switch_mode("dashboard")

    def on_unmount(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown()
            self.scheduler = None
        self._logs.exit()

    @on(DashboardScreen.Completed)
    def _after_launch(self) -> None:
        """Once the first dashboard is on the screen (or AFTER_LAUNCH_LATEST after mount): what the
        operator's first look should not wait for."""
        if self._after_launch_done:
            return
        self._after_launch_done = True
        if self._launched is not None:
            self._launched()
        if self.want_scheduler:
            self._start_scheduler()
        lazy = [m.module for m in self.MODES.values() if hasattr(m, "module")]
        self.run_worker(lambda: _import_screens(lazy), thread=True, group="import-screens", exit_on_error=False)

    def _start_scheduler(self) -> None:
        """APScheduler and the jobs cost ~150 ms of imports: they are imported in a worker, and the
        scheduler starts on the loop (once: _after_launch runs once)."""
        def make() -> None:
            try:
                self.post_message(self.SchedulerMade(make_scheduler(self.gov, self.operator)))
            except Exception as exc:
                self.post_message(self.SchedulerMade(None, describe_error(exc)))

        self.run_worker(make, thread=True, group="scheduler", exit_on_error=False)

    @on(SchedulerMade)
    def _scheduler_made(self, message: SchedulerMade) -> None:
        error = message.error
        if message.scheduler is not None and error is None:
            try:
                message.scheduler.start()
                self.scheduler = message.scheduler
            except Exception as exc:
                error = describe_error(exc)
        if self.scheduler is None:
            self._scheduler_missing = f"scheduler failed: {error}" if error else "scheduler not available"
            if error is not None:  # no breaker tick, alert delivery or lease from this console: say so
                self.notify(f"the embedded scheduler did not start: {error}", title="Scheduler failed",
                            severity="error", timeout=30, markup=False)

    @property
    def scheduler_note(self) -> str:
        if not self.want_scheduler:
            return ""
        if self.scheduler is None:
            return self._scheduler_missing or "scheduler starting"
        return "this console leads the scheduler" if getattr(self.scheduler, "is_leader", False) else "standby"

    # --- refresh ------------------------------------------------------------------------------

    def tick(self) -> None:
        self._ticks += 1
        for name, job in self._jobs:
            self._in_thread(name, job)
        self.refresh_data(slow=self._ticks % SLOW_EVERY == 0)
        screen = self.gov_screen
        if screen is not None:
            screen.reload()

    def add_background_job(self, name: str, job: Callable[[], None]) -> None:
        """Run ``job`` in a worker thread every refresh (the demo's simulated agent), never twice at once."""
        self._jobs.append((name, job))

    def refresh_data(self, *, slow: bool = False) -> None:
        self._in_thread("live", lambda: self.post_message(self.LiveLoaded(load_live(self.gov, self.operator))))
        if slow:
            self._in_thread("slow", lambda: self.post_message(self.SlowLoaded(load_slow(self.gov))))

    def refresh_all(self) -> None:
        """After an action: everything now, not at the next tick."""
        self.refresh_data(slow=True)
        screen = self.gov_screen
        if screen is not None:
            screen.reload()

    def _in_thread(self, key: str, fn: Callable[[], object]) -> None:
        """Run one read of ``key`` at a time: never pile up threads on a slow store. A read asked for
        while one runs is not dropped but run once after it (the running one may have started before
        an action committed; its result alone would leave the screen stale until the next tick)."""
        with self._busy_lock:
            if key in self._busy:
                self._again[key] = fn
                return
            self._busy.add(key)

        def work() -> None:
            job: Callable[[], object] | None = fn
            failure: BaseException | None = None
            while job is not None:
                try:
                    job()
                except Exception as exc:  # noqa: BLE001 - reported below, after the queued read ran
                    failure = exc
                with self._busy_lock:
                    job = self._again.pop(key, None)
                    if job is None:
                        self._busy.discard(key)
            if failure is not None:
                raise failure

        self.run_worker(work, thread=True, group=key, exit_on_error=False)

    @on(LiveLoaded)
    def _live_loaded(self, message: LiveLoaded) -> None:
        live = message.live
        if live.error is not None and self.live is not None and self.live.status is not None:
            # the last known state, and when it was read (the header says how stale it is)
            live = replace(self.live, error=live.error, marker=live.marker)
        self.live = live
        if live.ok:
            self._notice_changes(live)
        for screen in self._gov_screens():
            screen.show_live(live)

    @on(SlowLoaded)
    def _slow_loaded(self, message: SlowLoaded) -> None:
        if message.slow.error is None:
            self.slow = message.slow
            for screen in self._gov_screens():
                screen.on_slow(message.slow)

    def _notice_changes(self, live: LiveData) -> None:
        """A new breaker event (a trip, from any process) or a kill switch engaged elsewhere: notify and
        ring the bell."""
        if self._seen_events is None:
            self._seen_events = set(live.recent_ids)
        else:
            new = [e for e in reversed(live.recent) if e["id"] not in self._seen_events]
            self._seen_events |= live.recent_ids
            if len(new) == 1:
                e = new[0]
                scope = f" ({e['commandType']})" if e["commandType"] else ""
                effect = (e.get("observed") or {}).get("effect", e["action"])
                self.notify(f"{e['ruleName']}{scope}: {effect}. 2 lists the events, r resolves.",
                            title="[shadow] breaker would have tripped" if e["shadow"] else "Circuit breaker tripped",
                            severity="warning" if e["shadow"] else "error", markup=False)
            elif new:  # one toast for the trips of one read: each has its row on 1 and 2
                names = ", ".join(e["ruleName"] + (f" ({e['commandType']})" if e["commandType"] else "") for e in new)
                real = [e for e in new if not e["shadow"]]
                title = f"{len(new)} circuit breakers tripped" if real else f"[shadow] {len(new)} would have tripped"
                self.notify(f"{names}. 2 lists the events, r resolves.", title=title,
                            severity="error" if real else "warning", markup=False)
            if new:
                self.bell()
        assert live.status is not None  # called only for a read that is ok (_live_loaded)
        ks = live.status["killSwitch"]
        changed = self._kill_switch_seen is not None and ks["engaged"] != self._kill_switch_seen
        if changed and ks["engaged"] == self._kill_switch_mine:
            self._kill_switch_mine = None  # this console's own change: its outcome toast says it already
        elif changed:
            if ks["engaged"]:
                self.notify(f"by {ks['by']}: {ks['reason']}", title="KILL SWITCH ENGAGED", severity="error",
                            timeout=30, markup=False)
                self.bell()
            else:
                self.notify("the gate allows autonomous actions again (within phase and whitelist)",
                            title="Kill switch released")
        self._kill_switch_seen = ks["engaged"]

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """One toast at a time (the newest replaces the last), title and message on one line, gone after
        TOAST_SECONDS; app.tcss keeps it to two rows over the key bar, so it never covers a list's row."""
        self.clear_notifications()
        limit = TOAST_ERROR_SECONDS if severity == "error" else TOAST_SECONDS
        head = (escape(title) if markup else title) + ": " if title else ""
        super().notify(head + message, severity=severity, timeout=min(timeout or limit, limit),  # type: ignore[arg-type]
                       markup=markup)

    # --- screens ------------------------------------------------------------------------------

    @property
    def gov_screen(self) -> GovScreen | None:
        """The screen the operator is working on (under any open modal)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, GovScreen):
                return screen
        return None

    def _gov_screens(self) -> Iterable[GovScreen]:
        screen = self.gov_screen
        return [screen] if screen is not None else []

    def action_show(self, mode: str) -> None:
        if self.current_mode != mode:
            self.switch_mode(mode)

    # --- the command palette: the same actions as the keys ---------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The contract's keys, then the screen's own, then Textual's (less its Quit: ours is there): each
        action once, whichever keys reach it."""
        seen: set[str] = {"command_palette"}
        under = self.gov_screen
        name = under.SCREEN_NAME if under is not None else ""
        for k in KEYS:
            if k.action not in seen and k.applies_on(name):
                seen.add(k.action)
                yield SystemCommand(f"{k.label} ({k.footer or k.display})", k.tooltip,
                                    partial(self.run_action, k.action))
        for b in under.BINDINGS if under is not None else []:  # this screen's own: attest on 3, edit on 5, verify on 7
            if under is not None and isinstance(b, Binding) and b.show and b.action not in seen:  # (under: for mypy)
                seen.add(b.action)
                yield SystemCommand(f"{b.description} ({b.key_display or b.key})", b.tooltip or b.description,
                                    partial(under.run_action, b.action))
        yield from super_commands(super().get_system_commands(screen), {"Quit"})

    # --- running changes ----------------------------------------------------------------------

    class Performed(Message):
        def __init__(self, message: str | None, error: str | None, title: str, bell: bool) -> None:
            super().__init__()
            self.message, self.error, self.title, self.bell = message, error, title, bell

    def perform(self, fn: Callable[[], Any], done: Callable[[Any], str], *, title: str = "Done",
                unavailable: str | None = None) -> None:
        """Run a change in a worker thread; its outcome (or the refusal) comes back as a notification."""
        def work() -> None:
            try:
                result = fn()
            except StoreUnavailable as exc:
                text = unavailable.format(error=describe_error(exc)) if unavailable else describe_error(exc)
                self.post_message(self.Performed(None, text, "Store unreachable", bool(unavailable)))
                return
            except Exception as exc:
                self.post_message(self.Performed(None, describe_error(exc), error_title(exc), False))
                return
            try:
                text = done(result)
            except Exception as exc:  # a message we could not word is no reason to hide the success
                text = f"done ({type(exc).__name__} while describing it)"
            self.post_message(self.Performed(text, None, title, False))

        # the thread starts now: a thread worker would start only when the event loop next runs its task,
        # after the repaint of what the closed dialog uncovered (~25-50 ms; docs/performance.md, Console
        # keys). The worker awaits it, so `workers.wait_for_complete()` and the app's exit still see it.
        started = asyncio.get_running_loop().run_in_executor(None, work)
        self.run_worker(started, group="perform", exit_on_error=False)

    @on(Performed)
    def _performed(self, message: Performed) -> None:
        if message.error is not None:
            self._kill_switch_mine = None  # a refused change changes nothing: a later one is someone else's
            self.notify(message.error, title=message.title, severity="error", timeout=15, markup=False)
            if message.bell:
                self.bell()
        else:
            self.notify(message.message or "done", title=message.title, markup=False)
        self.refresh_all()
