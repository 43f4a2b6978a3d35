"""GovScreen: what every one of the seven screens shares — the status header, the footer, store reads
in worker threads with results back by message, and the hooks the app-level keys call."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from screens.data import LiveData, SlowData
from screens.errors import describe_error
from screens.header import StatusHeader
from screens.keybar import KeyBar
from screens.widgets import FilterInput, FilterRow, Table

if TYPE_CHECKING:
    from textual import getters

    from screens.app import GovconApp


class GovScreen(Screen):
    if TYPE_CHECKING:  # for mypy only: the console's screens run in GovconApp (Textual's typed `app`)
        app = getters.app(GovconApp)

    SCREEN_NAME: ClassVar[str] = ""
    SCREEN_TITLE: ClassVar[str] = ""
    FILTER_WHAT: ClassVar[str] = ""          # "" = this screen has nothing to filter

    class Loaded(Message):
        def __init__(self, key: str, value: Any, error: str | None) -> None:
            super().__init__()
            self.key, self.value, self.error = key, value, error

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self._busy: set[str] = set()
        self._again: dict[str, Callable[[], Any]] = {}  # one more load of a key once the running one ends

    # --- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        self._breakpoint_classes_now()
        yield StatusHeader()
        if self.FILTER_WHAT:
            yield FilterRow(self.FILTER_WHAT)
        yield from self.compose_body()
        yield KeyBar([b for b in self.BINDINGS if isinstance(b, Binding)], self.SCREEN_NAME)

    def compose_body(self) -> ComposeResult:
        yield from ()

    def _breakpoint_classes_now(self) -> None:
        """The breakpoint classes for the app's size, set before the first layout, as Textual's
        Screen._on_resize sets them on the first Resize, which comes after a first layout without them:
        every pane, plots included, would be laid out and drawn twice at launch."""
        horizontal = (self.app.HORIZONTAL_BREAKPOINTS if self.HORIZONTAL_BREAKPOINTS is None
                      else self.HORIZONTAL_BREAKPOINTS) or []
        vertical = (self.app.VERTICAL_BREAKPOINTS if self.VERTICAL_BREAKPOINTS is None
                    else self.VERTICAL_BREAKPOINTS) or []
        width, height = self.app.size
        on = self._get_breakpoint_classes(width, horizontal) | self._get_breakpoint_classes(height, vertical)
        self.update_classes({name: name in on for _, name in horizontal + vertical}, animate=False)

    # --- data ---------------------------------------------------------------------------------

    def on_screen_resume(self) -> None:
        self.show_live(self.app.live)
        if self.app.slow is not None:
            self.on_slow(self.app.slow)
        self.reload()

    def show_live(self, live: LiveData | None) -> None:
        header = next(iter(self.query(StatusHeader)), None)
        if header is None or not header.is_attached:  # a read landing while the app exits (no widgets left)
            return
        header.show(live, operator=self.app.operator, screen=self.SCREEN_TITLE,
                    demo=self.app.demo, scheduler=self.app.scheduler_note)
        if live is not None and live.ok:
            self.on_live(live)

    def on_live(self, live: LiveData) -> None:
        """Live data arrived (every second)."""

    def on_slow(self, slow: SlowData) -> None:
        """Readiness and trends arrived (every few seconds)."""

    def reload(self) -> None:
        """Load this screen's own data (called on show, every second while shown, after actions)."""

    def load(self, key: str, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in a worker thread; its result comes back as ``loaded(key, value)``. A load still
        running is not started twice (a slow store never piles up threads): the newest one asked for
        meanwhile runs once after it (the filter typed on 7 searches the store: its last keystroke counts)."""
        if key in self._busy:
            self._again[key] = fn
            return
        self._busy.add(key)

        def work() -> None:
            try:
                value, error = fn(), None
            except Exception as exc:
                value, error = None, describe_error(exc)
            self.post_message(self.Loaded(key, value, error))

        self.run_worker(work, thread=True, group=f"load-{key}", exit_on_error=False)

    @on(Loaded)
    def _on_loaded(self, message: Loaded) -> None:
        self._busy.discard(message.key)
        again = self._again.pop(message.key, None)
        if again is not None:
            self.load(message.key, again)
        if message.error is not None:
            self.load_failed(message.key, message.error)
        else:
            self.loaded(message.key, message.value)

    def loaded(self, key: str, value: Any) -> None:
        pass

    def load_failed(self, key: str, error: str) -> None:
        pass  # the header already says when the store is unreachable

    # --- what the app-level keys ask of the screen --------------------------------------------

    def selected_event(self) -> dict[str, Any] | None:
        return None

    def selected_proposal(self) -> dict[str, Any] | None:
        return None

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self.reload()

    # --- `/`: the filter, applied as it is typed -------------------------------------------------

    def filter_table(self) -> Table | None:
        """The list the filter narrows (the focus goes back to it): the first shown."""
        return next((t for t in self.query(Table) if t.display), None)

    def open_filter(self) -> None:
        row = self.query_one(FilterRow)
        row.disabled = False
        row.add_class("-open")
        field = row.query_one(FilterInput)
        if field.value != self.filter_text:
            field.value = self.filter_text
        field.cursor_position = len(field.value)
        field.focus()

    def close_filter(self, *, clear: bool) -> None:
        """Esc (clear) or Enter (keep): the focus goes back to the list; a cleared filter hides its line."""
        row = self.query_one(FilterRow)
        field = row.query_one(FilterInput)
        if clear:
            field.value = ""  # Input.Changed applies it
            if self.filter_text:
                self.apply_filter("")
        table = self.filter_table()
        if table is not None:
            table.focus()
        else:
            self.focus_next()
        if not self.filter_text:
            row.remove_class("-open")
            row.disabled = True

    @on(FilterInput.Changed, "#filter")
    def _filter_typed(self, event: FilterInput.Changed) -> None:
        event.stop()
        text = event.value.strip()
        if text != self.filter_text:
            self.apply_filter(text)

    @on(FilterInput.Submitted, "#filter")
    def _filter_submitted(self, event: FilterInput.Submitted) -> None:
        event.stop()
        self.close_filter(clear=False)
