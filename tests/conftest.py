"""Shared fixtures. Fixtures that start real servers live in tests/services/ as plugins."""

from __future__ import annotations

import faulthandler
import os
from typing import IO

import pytest

pytest_plugins: list[str] = [
    "tests.services.common",
    "tests.services.certs",
    "tests.services.tlsserver",
    "tests.services.httpserver",
    "tests.services.dnsserver",
    "tests.services.saas_fakes",
    "tests.services.postgres",
    "tests.services.azurite",
    "tests.services.kafka",
    "tests.services.sandbox",
    "tests.services.rabbitmq",
    "tests.services.s3",
    "tests.services.clickhouse",
    "tests.services.smtp",
    "tests.services.imap",
    "tests.services.kafka_sasl",
    "tests.services.kube",
]


_crash_log: IO[str] | None = None


def pytest_configure(config: pytest.Config) -> None:
    """With CONTROLPLANE_CRASH_LOG set (scripts/test), a hard crash writes every thread's
    Python stack to that file instead of stderr."""
    global _crash_log
    path = os.environ.get("CONTROLPLANE_CRASH_LOG")
    if path:
        _crash_log = open(path, "w")  # noqa: SIM115 - open for the whole session
        faulthandler.enable(file=_crash_log, all_threads=True)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    # The test running when a crash hit: scripts/test prints it with the crash log.
    path = os.environ.get("CONTROLPLANE_CRASH_LOG")
    if path:
        with open(path + ".test", "w") as f:
            f.write(nodeid + "\n")
