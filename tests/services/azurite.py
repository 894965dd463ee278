"""Azurite (npm azurite@3.35.0, installed by scripts/setup.d/30-azurite.sh) on a free port."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from controlplane.sandbox.localdata import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, azurite_binary

__all__ = ["ACCOUNT", "KEY", "Azurite", "start_azurite"]

ACCOUNT, KEY = AZURITE_ACCOUNT, AZURITE_KEY


def azurite_bin() -> str:
    path = azurite_binary()
    if path is None:
        pytest.fail("azurite-blob missing: run scripts/setup.d/30-azurite.sh (or scripts/test)")
    return path


def start_azurite() -> Azurite:
    """The demo's own Azurite launcher, in a fresh temp dir on a free loopback port."""
    return Azurite(tempfile.mkdtemp(prefix="cp-azurite-"), azurite_bin()).start()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    yield server
    server.stop()
    shutil.rmtree(os.path.dirname(server.workdir), ignore_errors=True)


@pytest.fixture
def own_azurite() -> Iterator[Azurite]:
    """An Azurite for one test that stops it."""
    server = start_azurite()
    yield server
    server.stop()
    shutil.rmtree(os.path.dirname(server.workdir), ignore_errors=True)
