"""Log lines: every record as one JSON object on stderr.

`configure_logging()` gives the root logger a `StreamHandler` on stderr with
`JsonFormatter`: the standard library's parts, used as its documentation shows.
`log-config.json` in the project's root makes uvicorn's own lines (startup, shutdown)
the same JSON until the app takes over. The lines are written as they are logged, on the
event loop's thread, as uvicorn writes its own: one short write to a pipe that the
container runtime or the terminal reads. Where the reader of stderr can stall, a
`QueueHandler` and a `QueueListener` move the writing to a thread of its own, at a cost
per line (docs/deployment.md, "Logs").

Each line holds the time, level, logger and message, the id of the request it was
logged in (`request_id`, null outside requests), every field passed with `extra=`, and
the traceback of an exception. The engines hide statement parameters; the formatter
also hides the row values that database servers quote in their own error messages, so
no log line carries users' data.
"""

import json
import logging
import re
import sys
from contextvars import ContextVar
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

    def __init__(self) -> None:
        super().__init__()
        # The time to the second, formatted once per second rather than once per line.
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
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

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if datefmt is not None or second != self._second[0]:
            formatted = super().formatTime(record, datefmt or _TIME_FORMAT)
            if datefmt is not None:
                return formatted
            self._second = (second, formatted)
        return self._second[1]

    def formatException(self, ei: Any) -> str:
        return hide_row_values(super().formatException(ei))


def hide_row_values(text: str) -> str:
    """`text` with the row values that database error messages quote replaced."""
    for pattern, replacement in _ROW_VALUES:
        text = pattern.sub(replacement, text)
    return text


def configure_logging(level: str) -> None:
    """Send every log record to stderr as JSON, at `level` and above; safe to call again."""
    root = logging.getLogger()
    # An earlier call's handler, or log-config.json's.
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, JsonFormatter):
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
