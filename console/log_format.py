"""The log of the long-running processes (`govcon serve`, `govcon scheduler`): one handler on the root
logger, secrets redacted, text or JSON Lines, reopened on SIGUSR1 for log rotation.

JSON (``--log-format json``, seed 004's structured entries): one object per line with ``time`` (UTC, ISO
8601 with milliseconds), ``level``, ``logger``, ``message``, and the record's own fields (``extra=``
of the logging call), ``exc`` for a traceback. Everything is redacted as the text lines are.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from console.render import CleanFormatter
from engine.redact import RedactingFilter, redact_obj

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
               .replace("+00:00", "Z"), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        if fields:
            doc.update(redact_obj({k: v if _jsonable(v) else repr(v) for k, v in fields.items()}))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False, default=str)


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def setup_logging(log_file: str | None, log_format: str = "text") -> logging.Handler:
    """One handler on the root logger (uvicorn's loggers propagate to it), redacting secrets."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: use one of {', '.join(FORMATS)}")
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        # owner and group only, whatever the umask: the log names operators, alerts and kill-switch reasons,
        # and on a shared host reads need a role (secrets in it are redacted all the same)
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640))
        handler: logging.Handler = logging.handlers.WatchedFileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    # text lines escape control characters (a command type "x\x1b[2J" must not clear a tail -f terminal)
    handler.setFormatter(JsonFormatter() if log_format == "json" else CleanFormatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per job run
    return handler


def reopener(handler: logging.Handler):
    """SIGUSR1: close and reopen the log file (after `mv governance.log …`, as the runbook rotates)."""
    def reopen() -> None:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream:
                    handler.stream.close()
                handler.stream = handler._open()
            finally:
                handler.release()
        logging.getLogger("govcon.serve").info("SIGUSR1: log file reopened")
    return reopen
