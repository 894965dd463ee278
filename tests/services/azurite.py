"""Azurite (npm azurite@3.35.0, installed by scripts/setup.d/30-azurite.sh) on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.services.common import free_port

# Azurite's documented development account (public, not a secret).
ACCOUNT = "devstoreaccount1"
KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")


def azurite_bin() -> str:
    cache = os.environ.get("CONTROLPLANE_CACHE", os.path.expanduser("~/.cache/controlplane"))
    path = os.path.join(cache, "azurite", "node_modules", ".bin", "azurite-blob")
    if not os.path.exists(path):
        pytest.fail(f"{path} missing: run scripts/setup.d/30-azurite.sh (or scripts/test)")
    return path


@dataclass
class Azurite:
    port: int
    workdir: str
    proc: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};")

    def start(self) -> None:
        log = open(os.path.join(self.workdir, "azurite.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [azurite_bin(), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "-l", os.path.join(self.workdir, "data"), "--skipApiVersionCheck", "--loose"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("azurite did not start; see "
                                       f"{self.workdir}/azurite.log") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop like an outage would: SIGTERM (Azurite saves its metadata), then kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None


def start_azurite() -> Azurite:
    server = Azurite(free_port(), tempfile.mkdtemp(prefix="cp-azurite-"))
    server.start()
    return server


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def own_azurite() -> Iterator[Azurite]:
    """An Azurite for one test that stops it."""
    server = start_azurite()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)
