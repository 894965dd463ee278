"""360Voice control plane: synthetic checks, incidents, backups and DR for 360Voice on AKS."""

from __future__ import annotations

__version__ = "0.1.0"
