"""Shared fixtures. Fixtures that start real servers live in tests/services/ as plugins."""

from __future__ import annotations

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
]
