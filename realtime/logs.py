"""Keep tokens out of logs, whatever server writes them (uvicorn logs WebSocket paths with their query string).

``LOG_FORMAT=json`` (config/settings.py) writes each record as one JSON object per line, with the connection's
fields where the code passed them (``extra=consumer._log_context(...)``)::

    {"time": "2026-12-02T06:20:00.123Z", "level": "INFO", "logger": "realtime.consumer",
     "message": "closing slow consumer conn-... (2000 frames waiting)", "connection_id": "conn-...",
     "user_id": "user-kim", "event": "slow_consumer", "code": 4408}
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

_TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&\s\"']+")
# Structured fields a record may carry (``extra=``); anything else a caller adds stays out of the line.
CONTEXT_FIELDS = ("connection_id", "user_id", "event", "code")


def redact(text: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Rewrite ``access_token=...`` in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the connection's fields, and the traceback if any.

    The message is formatted after ``RedactTokens`` ran on the record; the traceback is redacted here.
    """

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, object] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)
