"""Helpers for tests: free ports, running the CLI as a user would, test probe kinds."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.probes import KINDS, probe_class

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `controlplane ARGS` from this source tree, capturing output."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "controlplane", *args], cwd=cwd or ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return {"CONTROLPLANE_CACHE": str(tmp_path / "cache")}


@pytest.fixture
def scripted_kind() -> Iterator[None]:
    """Registers the `scripted` test probe kind (tests/fakeprobes.py) for one test."""
    from tests import fakeprobes

    KINDS["scripted"] = "tests.fakeprobes:ScriptedProbe"
    probe_class.cache_clear()
    fakeprobes.SCRIPTS.clear()
    fakeprobes.RELEASE.clear()
    yield
    fakeprobes.RELEASE.set()
    del KINDS["scripted"]
    probe_class.cache_clear()
