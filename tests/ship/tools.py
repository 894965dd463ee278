"""Where the shipping tools are: Debian's (promtool, prometheus, shellcheck) on PATH; helm,
actionlint and kubeconform built by scripts/setup.d/60-ship.sh into $CONTROLPLANE_CACHE/bin."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE_BIN = Path(os.environ.get("CONTROLPLANE_CACHE",
                                Path.home() / ".cache" / "controlplane")) / "bin"


def tool(name: str) -> str:
    """The path of ``name``; fails the test (not skips it) when setup has not installed it."""
    found = shutil.which(name) or shutil.which(name, path=str(CACHE_BIN))
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/setup.d/60-ship.sh")
    return found
