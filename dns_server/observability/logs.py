"""The server's own log lines: CoreDNS's text lines, or one JSON object per line.

Rules this module keeps:
- Every line goes to standard output, whole lines at a time, through one `Output` (CoreDNS logs to
  stdout, `coremain/run.go`; only a fatal error at start goes to stderr, which the caller prints).
- `text` is CoreDNS's layout (`plugin/pkg/log`): no timestamp, `[LEVEL] `, then `plugin/<name>: `
  when the logger is one of a plugin's (`plugin_of`), then the message.  Container runtimes
  add the time.
- `json` is one object per line: `time` (RFC 3339, UTC, milliseconds), `level`, `logger`, `msg`,
  then every field the caller passed in `extra` (`log_event` passes an `event` name and its fields),
  and `exception` with the traceback when there is one.
- The level names are CoreDNS's: DEBUG, INFO, WARNING, ERROR, FATAL (Python's CRITICAL); `json`
  writes them in lower case.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timezone
from typing import Any, Mapping, TextIO

FORMATS = ("text", "json")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING", logging.ERROR: "ERROR",
               logging.CRITICAL: "FATAL"}
PLUGINS_PACKAGE = "dns_server.plugins."  # a logger below dns_server.plugins.<directive> speaks for that plugin
# Loggers outside the plugins that speak for one: the cluster sources feed the kubernetes plugin.
PLUGIN_LOGGERS = {"dns_server.cluster.sources": "kubernetes"}
# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class Output:
    """Where our lines go: standard output unless a stream is given, whole lines, one writer at a time.

    Each write is flushed: a line must reach the container runtime when it happens, not when a
    buffer fills.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        stream = self._stream or sys.stdout  # looked up each time: tests and embedders replace sys.stdout
        with self._lock:
            stream.write(text)
            stream.flush()


STDOUT = Output()


def plugin_of(logger: str) -> str | None:
    """The CoreDNS plugin a logger speaks for (`dns_server.plugins.forward.outbound` -> `forward`), or None."""
    if logger.startswith(PLUGINS_PACKAGE):
        return logger[len(PLUGINS_PACKAGE):].partition(".")[0]
    name = logger
    while name:
        if name in PLUGIN_LOGGERS:
            return PLUGIN_LOGGERS[name]
        name = name.rpartition(".")[0]
    return None


def level_name(levelno: int) -> str:
    """CoreDNS's name for a level; a level between two of ours takes the name of the one below."""
    if levelno in LEVEL_NAMES:
        return LEVEL_NAMES[levelno]
    below = [number for number in LEVEL_NAMES if number < levelno]
    return LEVEL_NAMES[max(below)] if below else LEVEL_NAMES[logging.DEBUG]


def text_line(level: str, logger: str, message: str) -> str:
    """`[INFO] plugin/forward: message` (CoreDNS's layout), without the newline."""
    plugin = plugin_of(logger)
    return f"[{level}] plugin/{plugin}: {message}" if plugin else f"[{level}] {message}"


def json_line(level: str, logger: str, message: str, created: float,
              fields: Mapping[str, Any] | None = None) -> str:
    """One JSON object: time, level, logger, msg, then `fields`; values JSON cannot hold become text."""
    stamp = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")
    line = {"time": stamp.replace("+00:00", "Z"), "level": level.lower(), "logger": logger, "msg": message}
    line.update(fields or {})
    return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """CoreDNS's text lines; a traceback follows on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        line = text_line(level_name(record.levelno), record.name, record.getMessage())
        details = self._details(record)
        return f"{line}\n{details}" if details else line

    def _details(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the fields passed in `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return json_line(level_name(record.levelno), record.name, record.getMessage(), record.created, fields)


class OutputHandler(logging.Handler):
    """A logging handler that writes formatted records to an `Output`."""

    def __init__(self, output: Output) -> None:
        super().__init__()
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + "\n"
            self.output.write(text)
        except Exception:  # logging's contract: a failing handler reports on stderr and never raises
            self.handleError(record)


def setup_logging(level: str = "info", log_format: str = "text", output: Output = STDOUT) -> None:
    """Send every log record of the process, at `level` and above, to `output` in `log_format`.

    Replaces the root logger's handlers, so calling it again (a reload) changes level and format.
    """
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: use one of {', '.join(LEVELS)}")
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: use one of {', '.join(FORMATS)}")
    handler = OutputHandler(output)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # the API source logs its own retries, once each


def log_event(logger: logging.Logger, event: str, message: str, *, level: int = logging.INFO,
              **fields: Any) -> None:
    """Log a line about something the server did (start-up, sync, reload, shutdown).

    `text` shows `message`, which should read well on its own; `json` adds `event` and `fields`
    (`log_event(log, "sync", "services: 10000 objects in 1.20 s", kind="services", objects=10000,
    seconds=1.2)`).  A field may not be named like a LogRecord attribute (`name`, `msg`, ...).
    """
    logger.log(level, message, extra={"event": event, **fields})
