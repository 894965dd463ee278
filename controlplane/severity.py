"""Incident severity: one definition for checks, backups and incident routing."""

from __future__ import annotations

from typing import Literal

Severity = Literal["critical", "major", "minor"]
"""Most urgent first; ``critical`` pages, ``minor`` waits for working hours."""

SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor")
SEVERITY_RANK: dict[str, int] = {"minor": 0, "major": 1, "critical": 2}
"""For ``min_severity`` style comparisons: higher is more urgent."""
