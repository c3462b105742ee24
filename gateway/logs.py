"""Structured logs: one JSON object a line; phone numbers masked, message texts and secrets left out."""
from __future__ import annotations

import json
import logging
import sys
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
    if logger.isEnabledFor(level):
        # What Logger.log does, less looking up the caller's file and line (a walk of the
        # stack on every line): the JSON lines do not show them.
        logger.handle(logger.makeRecord(LOGGER, level, "(unknown file)", 0, event, (), None,
                                        extra={"teeka_fields": clean(fields)}))


_logger = logging.getLogger(LOGGER)


class JsonFormatter(logging.Formatter):
    """`{"ts": ..., "level": ..., "event": ..., <fields>}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        line.update(getattr(record, "teeka_fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(level: int = logging.INFO, stream=None) -> None:
    """Send Teeka's events to stderr as JSON lines; safe to call more than once."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    if any(getattr(h, "teeka", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.teeka = True
    logger.addHandler(handler)
    # Our handler writes the line; the root logger (if someone configured it) would repeat it.
    logger.propagate = False
