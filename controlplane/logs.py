"""Logging set-up: key=value lines on stderr, secrets redacted."""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(
    r"(?i)((?:token|password|passwd|secret|api[_-]?key|authorization|sig|signature)"
    r"[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?)([^\s\"'&,;]+)")
_DSN_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}


def redact(text: str) -> str:
    """Hide values that look like credentials (tokens, passwords, DSN passwords)."""
    text = _DSN_PASSWORD.sub(r"\1***\3", text)
    return _SECRET.sub(_hide, text)


def _hide(m: re.Match[str]) -> str:
    # A closing bracket the value never opened belongs to the text around it:
    # "(token=abc)" must stay balanced as "(token=***)", not lose its ")".
    value, tail = m.group(2), ""
    while value and value[-1] in _CLOSERS and \
            value.count(value[-1]) > value.count(_CLOSERS[value[-1]]):
        value, tail = value[:-1], value[-1] + tail
    return f"{m.group(1)}***{tail}"


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(
        "ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Werkzeug sets its own logger to INFO (request lines); follow the chosen level instead.
    logging.getLogger("werkzeug").setLevel(level.upper())
