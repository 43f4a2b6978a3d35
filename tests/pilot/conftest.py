"""Console fixtures: a seeded SQLite store (built once, copied per test), an app factory, and `settle`
which waits until the console's store reads have landed."""

from __future__ import annotations

import shutil
from pathlib import Path
from weakref import WeakKeyDictionary

import pytest

from engine.clock import ManualClock
from engine.governance import Governance
from storage.store import Store
from tests.pilot.seed import OPERATOR, T0, seeded_gov


def _template(tmp_path_factory, name: str, **kw) -> Path:
    path = tmp_path_factory.getbasetemp() / f"console-{name}.db"
    if not path.exists():
        gov = seeded_gov(str(path), **kw)
        gov.store.dispose()  # closes the WAL into the main file, so a plain copy is complete
    return path


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> Path:
    return _template(tmp_path_factory, "seeded")


@pytest.fixture(scope="session")
def calm_template(tmp_path_factory) -> Path:
    """No breaker events open and every item attested: readiness allows approving."""
    return _template(tmp_path_factory, "calm", trips=False, ready=True)


def _copy(template: Path, tmp_path: Path) -> str:
    target = tmp_path / "governance.db"
    shutil.copyfile(template, target)
    return str(target)


@pytest.fixture
def console_clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def console_url(seeded_template, tmp_path) -> str:
    return _copy(seeded_template, tmp_path)


@pytest.fixture
def console_gov(console_url, console_clock):
    gov = Governance(Store(console_url), console_clock)
    yield gov
    gov.store.dispose()


@pytest.fixture
def calm_gov(calm_template, tmp_path, console_clock):
    gov = Governance(Store(_copy(calm_template, tmp_path)), console_clock)
    yield gov
    gov.store.dispose()


@pytest.fixture
def make_console():
    from console.app import make_app

    def make(gov, operator: str = OPERATOR):
        return make_app(gov, operator=operator, scheduler=False)
    return make


async def settle(pilot, rounds: int = 2) -> None:
    """Let timers fire, worker threads finish and their messages be handled."""
    for _ in range(rounds):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def until(pilot, predicate, timeout: float = 20.0, what: str = "the console to catch up") -> None:
    """Settle until ``predicate()`` holds, against a deadline (a loaded CI machine delivers worker
    results later than a quiet one; a fixed number of rounds is then too few). Between tries the loop
    lets 20 ms pass, so a timer-driven change (a poll, a toast) gets its turn without a busy wait."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        await settle(pilot, rounds=1)
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.02)


def palette_offers(app, text: str) -> bool:
    """The command palette has finished searching and its highlighted command names ``text``
    (pressing Enter then runs that command)."""
    from textual.command import CommandList, CommandPalette
    palette = app.screen
    if not isinstance(palette, CommandPalette) or palette._show_busy:
        return False
    options = palette.query_one(CommandList)
    if options.highlighted is None:
        return False
    prompt = options.get_option_at_index(options.highlighted).prompt
    return text.lower() in str(getattr(prompt, "plain", prompt)).lower()


# What the console asked to show, per app, recorded on the test side (_record_toasts_and_bells): the
# production code keeps no list for tests to read.
_TOASTS: WeakKeyDictionary[object, list[tuple[str, str, str]]] = WeakKeyDictionary()
_BELLS: WeakKeyDictionary[object, int] = WeakKeyDictionary()


@pytest.fixture(autouse=True)
def _record_toasts_and_bells(monkeypatch):
    """Wraps GovconApp.notify and App.bell (for every console a test makes) so that `notifications`
    and `bells` can tell what was shown and rung; each wrapper calls the real method."""
    from screens.app import GovconApp

    notify, bell = GovconApp.notify, GovconApp.bell

    def recording_notify(self, message: str, *, title: str = "", severity: str = "information", **kw) -> None:
        _TOASTS.setdefault(self, []).append((title, message, severity))
        notify(self, message, title=title, severity=severity, **kw)

    def recording_bell(self) -> None:
        _BELLS[self] = _BELLS.get(self, 0) + 1
        bell(self)

    monkeypatch.setattr(GovconApp, "notify", recording_notify)
    monkeypatch.setattr(GovconApp, "bell", recording_bell)


def notifications(app) -> list[tuple[str, str, str]]:
    """Every toast the console showed, in order, as (title, message, severity): one is on screen at a
    time (GovconApp.notify), so Textual's own list holds only the last."""
    return list(_TOASTS.get(app, []))


def bells(app) -> int:
    """How often the console rang the terminal's bell (App.bell: a no-op in a headless test)."""
    return _BELLS.get(app, 0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def text_of(widget) -> str:
    """The plain text a Static shows (markup strings, rich Text or any rich renderable)."""
    from io import StringIO

    from rich.console import Console
    from rich.text import Text
    from textual.content import Content

    content = widget.content
    if isinstance(content, str):
        return Content.from_markup(content).plain
    if isinstance(content, (Text, Content)):
        return content.plain
    console = Console(file=StringIO(), width=200, color_system=None, legacy_windows=False)
    console.print(content)
    return console.file.getvalue()
