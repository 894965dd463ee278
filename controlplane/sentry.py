"""Sentry: initialised when ``SENTRY_DSN`` (or ``telemetry.sentry_dsn``) is set.

Errors logged anywhere (a crashed probe, a notifier that gave up, a failed job) become
Sentry events through the logging integration; ``check=<id>`` in the log line becomes the
``check`` tag. :func:`capture` reports an exception with the tag explicitly. Every event
is scrubbed before it leaves: values under secret-looking keys are replaced and
credential-looking text is redacted with the same rules as our logs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration

from controlplane.redact import is_secret_key, redact

if TYPE_CHECKING:
    from controlplane.app import Runtime

log = logging.getLogger(__name__)

_CHECK = re.compile(r"\bcheck=([a-z0-9][a-z0-9._-]*)")
FILTERED = "[Filtered]"


def init_sentry(dsn: str | None, environment: str | None = None) -> bool:
    """Start the SDK; returns False (and does nothing) without a DSN."""
    dsn = dsn or os.environ.get("SENTRY_DSN")
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn, environment=environment or os.environ.get("SENTRY_ENVIRONMENT"),
        before_send=scrub_event, max_breadcrumbs=50,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)])
    log.info("sentry enabled")
    return True


def capture(exc: BaseException, check_id: str | None = None, **tags: str) -> None:
    """Report ``exc`` with the check id as a tag (no-op when Sentry is off)."""
    with sentry_sdk.new_scope() as scope:
        if check_id:
            scope.set_tag("check", check_id)
        for k, v in tags.items():
            scope.set_tag(k, v)
        sentry_sdk.capture_exception(exc)


def scrub_event(event: Any, _hint: Any) -> Any:
    tags = event.setdefault("tags", {})
    if isinstance(tags, dict) and "check" not in tags:
        found = _CHECK.search(_log_text(event))
        if found:
            tags["check"] = found.group(1)
    return _scrub(event)


def _log_text(event: dict[str, Any]) -> str:
    entry = event.get("logentry") or {}
    text = str(entry.get("formatted") or "")
    with contextlib.suppress(TypeError, ValueError):
        text += " " + str(entry.get("message") or "") % tuple(entry.get("params") or ())
    return text


def _scrub(value: Any, key: str = "") -> Any:
    if key and is_secret_key(key) and isinstance(value, str | bytes | int | float):
        return FILTERED
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub(v) for v in value)
    if isinstance(value, str):
        return redact(value)
    return value


def create(runtime: Runtime) -> None:
    """Component hook: only initialises the SDK, nothing to start or stop."""
    secret = runtime.config.telemetry.sentry_dsn
    init_sentry(secret.get_secret_value() if secret else None)
