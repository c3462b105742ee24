"""Structured logs: one JSON object a line; phone numbers masked, message texts and secrets left out."""
from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, timezone

from .phones import mask

LOGGER = "teeka"

# Fields holding a phone number are masked; matched by name so callers cannot forget.
_PHONE_FIELDS = {"phone", "to", "from", "from_", "phone_number", "phonenumber", "raw_phone", "msisdn"}
# Message texts can carry security codes; only their length is logged.
_TEXT_FIELDS = {"text", "body", "message", "sms", "screen"}
# Never written, whatever the value.
_SECRET_FIELDS = {"key", "api_key", "apikey", "webhook_key", "code", "code_secret", "secret",
                  "password", "token", "nonce"}


# Field names that need no treatment, as most do: skips the lookups below for them.
_PLAIN_FIELDS = frozenset({"path", "status", "ms", "session", "id", "reason", "ref", "kind",
                           "event", "network", "provider_id", "command", "answered"})


def clean(fields: dict) -> dict:
    """The fields as they may appear in a log line."""
    out = {}
    for name, value in fields.items():
        if value is None:
            continue
        if name in _PLAIN_FIELDS:
            out[name] = value
            continue
        low = name.lower()
        if low in _SECRET_FIELDS:
            continue
        if low in _TEXT_FIELDS:
            out[f"{name}_len"] = len(value) if isinstance(value, str) else None
            continue
        if low in _PHONE_FIELDS:
            value = mask(str(value))
        out[name] = value
    return out


def log_event(event: str, /, *, level: int = logging.INFO, **fields) -> None:
    """Log one event with named fields, e.g. `log_event("sms_sent", phone=p, ref=r)`."""
    logger = _logger
    if not logger.isEnabledFor(level):
        return
    handlers = logger.handlers
    if (len(handlers) == 1 and type(handlers[0]) is JsonLines and not logger.filters
            and not handlers[0].filters):
        handlers[0].write_event(level, event, clean(fields))  # the usual case: no LogRecord
        return
    # What Logger.log does, less looking up the caller's file and line (a walk of the stack on
    # every line): the JSON lines do not show them.
    logger.handle(logger.makeRecord(LOGGER, level, "(unknown file)", 0, event, (), None,
                                    extra={"teeka_fields": clean(fields)}))


_logger = logging.getLogger(LOGGER)


def _line(created: float, level: int, event: str, fields: dict, error: str = "") -> str:
    line = {
        "ts": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds"),
        "level": logging.getLevelName(level).lower(),
        "event": event,
    }
    line.update(fields)
    if error:
        line["error"] = error
    return json.dumps(line, default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """`{"ts": ..., "level": ..., "event": ..., <fields>}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        error = self.formatException(record.exc_info) if record.exc_info else ""
        return _line(record.created, record.levelno, record.getMessage(),
                     getattr(record, "teeka_fields", {}), error)


class JsonLines(logging.StreamHandler):
    """Teeka's handler: JSON lines on a stream. `log_event` hands it its fields directly when
    it is the logger's only handler, without building a LogRecord (a webhook logs a line per
    request); records from anywhere else go through `JsonFormatter` to the same lines."""

    def __init__(self, stream):
        super().__init__(stream)
        self.setFormatter(JsonFormatter())

    def write_event(self, level: int, event: str, fields: dict) -> None:
        if level < self.level:
            return
        try:
            line = _line(time.time(), level, event, fields)
            with self.lock:
                self.stream.write(line + self.terminator)
                self.stream.flush()
        except Exception:  # noqa: BLE001 - as in logging: a log line never fails its caller
            self.handleError(logging.makeLogRecord({"name": LOGGER, "msg": event}))


def configure(level: int = logging.INFO, stream=None) -> None:
    """Send Teeka's events to stderr as JSON lines; safe to call more than once."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    if any(isinstance(h, JsonLines) for h in logger.handlers):
        return
    logger.addHandler(JsonLines(stream or sys.stderr))
    # Our handler writes the line; the root logger (if someone configured it) would repeat it.
    logger.propagate = False
