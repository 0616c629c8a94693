"""Token redaction (realtime/logs.py): no access token reaches a log line, from any part of a record."""

from __future__ import annotations

import io
import logging

import pytest

from realtime.logs import JsonFormatter, RedactTokens, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/v1/ws?access_token=abc.def.ghi", "/v1/ws?access_token=[redacted]"),
        ("/v1/ws?x=1&access_token=abc&y=2", "/v1/ws?x=1&access_token=[redacted]&y=2"),
        ('"GET /v1/ws?access_token=abc HTTP/1.1" 101', '"GET /v1/ws?access_token=[redacted] HTTP/1.1" 101'),
        ("access_token=one access_token=two", "access_token=[redacted] access_token=[redacted]"),
        ("no token here", "no token here"),
    ],
)
def test_redact_replaces_every_token_and_keeps_the_rest(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_redacts_message_and_string_arguments_and_keeps_others() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s %s %d", None, None)
    record.args = ("/v1/ws?access_token=secret-1", "access_token=secret-2", 101)
    record.msg = "peer %s asked for %s (%d) access_token=secret-3"
    assert RedactTokens().filter(record) is True  # redacts, never drops
    message = record.getMessage()
    assert "secret" not in message
    assert message.endswith("(101) access_token=[redacted]")


def test_a_logger_with_the_filter_on_its_handler_writes_no_token() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactTokens())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.realtime.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("GET %s", "/v1/ws?access_token=leaked", stack_info=True)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "leaked" not in line and "access_token=[redacted]" in line
