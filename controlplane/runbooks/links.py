"""Where a check's ``runbook:`` leads: an http(s) URL as written, a runbook id to its page."""

from __future__ import annotations


def runbook_url(value: str | None, base: str = "") -> str | None:
    """``/runbooks/ID`` (under ``base``, the dashboard's public URL, when given)."""
    if not value:
        return None
    if value.startswith(("http://", "https://")):
        return value
    return f"{base.rstrip('/')}/runbooks/{value}"
