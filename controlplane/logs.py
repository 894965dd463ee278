"""Logging set-up: key=value lines on stderr, secrets redacted (rules: controlplane/redact.py).

``redact`` is re-exported here for the callers that import it from this module."""

from __future__ import annotations

import logging

from controlplane.redact import redact

__all__ = ["RedactingFormatter", "redact", "setup_logging"]


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
    # Werkzeug (tests' servers) and waitress set their own levels; follow the chosen one.
    for name in ("werkzeug", "waitress"):
        logging.getLogger(name).setLevel(level.upper())
