"""Audit of runbook runs (Jira trail, Slack start and end): see docs/runbooks.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controlplane.app import Runtime
    from controlplane.runbooks.engine import Engine


def attach(runtime: Runtime, engine: Engine) -> None:
    """Subscribe the audit trail to the engine's run events."""
