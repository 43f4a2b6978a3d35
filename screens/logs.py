"""Log lines while the console runs: Textual draws on the terminal, so a logging handler writing to
stderr would scribble over the screen. While the app runs, stderr handlers are set aside; warnings and
errors become notifications (alert lines excepted: a trip is announced by the console itself), and
everything goes to Textual's log (`textual console` shows it)."""

from __future__ import annotations

import logging
import sys

SILENT = ("govcon.alerts",)  # the notifier logs every alert; the console announces trips itself


class ConsoleLogHandler(logging.Handler):
    def __init__(self, app) -> None:
        super().__init__(logging.INFO)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.app.log(text)
            if record.levelno >= logging.WARNING and not record.name.startswith(SILENT):
                self.app.notify(record.getMessage(), title=record.name,
                                severity="error" if record.levelno >= logging.ERROR else "warning",
                                markup=False)
        except Exception:  # a log line must never take the console down
            self.handleError(record)


class StderrLogsAside:
    """Context for the app's run: ``enter`` swaps stderr handlers for ConsoleLogHandler, ``exit`` undoes it."""

    def __init__(self, app) -> None:
        self.app = app
        self.moved: list[logging.Handler] = []
        self.handler: ConsoleLogHandler | None = None

    def enter(self) -> None:
        root = logging.getLogger()
        self.moved = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                      and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__, sys.stdout, sys.__stdout__)]
        self.handler = ConsoleLogHandler(self.app)
        for h in self.moved:
            root.removeHandler(h)
            for f in h.filters:  # keep the redaction of secrets
                self.handler.addFilter(f)
        root.addHandler(self.handler)

    def exit(self) -> None:
        root = logging.getLogger()
        if self.handler is not None:
            root.removeHandler(self.handler)
            self.handler = None
        for h in self.moved:
            root.addHandler(h)
        self.moved = []
