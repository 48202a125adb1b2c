"""Log lines: every record as one JSON object on stderr, written by a thread of its own.

`configure_logging()` sends the records of every logger to stderr through the standard
library's `QueueHandler` and `QueueListener`: the event loop's thread formats a record
and puts the line on a queue, and the listener's thread does the writing, so a slow
terminal or a full pipe never stalls the loop. `log-config.json` in the project's root
makes uvicorn's own lines (startup, shutdown) the same JSON until the app takes over.

Each line holds the time, level, logger and message, the id of the request it was
logged in (`request_id`, null outside requests), every field passed with `extra=`, and
the traceback of an exception. The engines hide statement parameters; the formatter
also hides the row values that database servers quote in their own error messages, so
no log line carries users' data.
"""

import json
import logging
import queue
import re
import sys
from contextvars import ContextVar
from logging.handlers import QueueHandler, QueueListener
from typing import Any

__all__ = [
    "JsonFormatter",
    "configure_logging",
    "current_request_id",
    "hide_row_values",
    "request_id",
]

# The id of the request being served; `RequestContextMiddleware` sets it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# One encoder for every line: json.dumps(..., default=str) would build a new one each time.
_ENCODER = json.JSONEncoder(default=str)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"

# The attributes every LogRecord has; the others were passed with `extra=` (or added by a
# filter) and belong in the line, except uvicorn's `color_message`: the message again,
# with terminal colour codes, for its own formatter.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
_NOT_FIELDS = _RECORD_ATTRIBUTES | {"message", "asctime", "taskName", "color_message"}

# Where database servers quote row values in their error messages, which an engine's
# hide_parameters cannot reach: PostgreSQL's DETAIL line ("Key (email)=(ann@...) already
# exists", "Failing row contains (...)") and MySQL's "Duplicate entry '...' for key".
_ROW_VALUES = (
    (re.compile(r"^(\s*DETAIL:).*$", re.MULTILINE), r"\1 [row values hidden]"),
    (re.compile(r"Duplicate entry '.*?' for key", re.DOTALL), "Duplicate entry [hidden] for key"),
)


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return request_id.get()


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object: time, level, logger, message, request id,
    then the fields passed with `extra=`, which win over the defaults."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, _TIME_FORMAT),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _NOT_FIELDS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _ENCODER.encode(line)

    def formatException(self, ei: Any) -> str:
        return hide_row_values(super().formatException(ei))


def hide_row_values(text: str) -> str:
    """`text` with the row values that database error messages quote replaced."""
    for pattern, replacement in _ROW_VALUES:
        text = pattern.sub(replacement, text)
    return text


class _LineQueueHandler(QueueHandler):
    """Puts each record's finished JSON line on a queue, and starts the thread that
    writes the lines to stderr."""

    def __init__(self) -> None:
        lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        super().__init__(lines)
        self.setFormatter(JsonFormatter())
        # The writer's own formatter writes each line as this handler made it.
        self.writer: QueueListener | None = QueueListener(lines, logging.StreamHandler(sys.stderr))
        self.writer.start()

    def close(self) -> None:
        # logging.shutdown(), which runs at exit, closes every handler: stopping the
        # writer writes out what is still queued.
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.stop()
        super().close()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        prepared: logging.LogRecord = super().prepare(record)
        # In the line already; Python 3.11 leaves it set, and the writer would add it again.
        prepared.stack_info = None
        return prepared


def configure_logging(level: str) -> None:
    """Send every log record to stderr as JSON, at `level` and above; safe to call again."""
    root = logging.getLogger()
    # An earlier call's handler, or log-config.json's, which wrote on the loop's thread.
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, JsonFormatter):
            root.removeHandler(handler)
            handler.close()
    root.addHandler(_LineQueueHandler())
    root.setLevel(level)
