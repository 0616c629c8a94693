"""Keep tokens out of logs, whatever server writes them (uvicorn logs WebSocket paths with their query string)."""

from __future__ import annotations

import logging
import re

_TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&\s\"']+")


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
