"""The dns probe without ``nameserver`` asks the system's nameservers (/etc/resolv.conf).

The machine's own resolv.conf is never touched: the probe runs in a private mount
namespace (``unshare -m``) where a resolv.conf naming a scripted DNS server on a loopback
address, port 53, is bind-mounted over /etc/resolv.conf.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services.common import ROOT
from tests.services.dnsserver import ScriptedDnsServer

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to give the probe its own /etc/resolv.conf")


@pytest.fixture
def system_dns() -> Iterator[ScriptedDnsServer]:
    # Port 53 is what resolv.conf implies; a random 127/8 address keeps parallel runs apart.
    for _ in range(20):
        host = f"127.53.{random.randint(0, 255)}.{random.randint(1, 254)}"
        try:
            server = ScriptedDnsServer(host, 53)
            break
        except OSError:
            continue
    else:
        raise RuntimeError("no free loopback address for a DNS server on port 53")
    server.start()
    yield server
    server.stop()


def probe_with_system_resolver(tmp_path: Path, server_host: str,
                               *args: str) -> tuple[int, dict[str, Any]]:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {server_host}\noptions timeout:2 attempts:1\n")
    command = " ".join(["mount", "--bind", str(resolv), "/etc/resolv.conf", "&&", "exec",
                        sys.executable, "-m", "controlplane", "probe", "dns", *args, "--json"])
    proc = subprocess.run(["unshare", "-m", "sh", "-c", command], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.stderr == "", proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return proc.returncode, doc


def test_without_a_nameserver_the_system_resolver_is_asked(
        tmp_path: Path, system_dns: ScriptedDnsServer) -> None:
    system_dns.add("360voice.techhalo.ai", "A", "20.124.179.20")
    code, doc = probe_with_system_resolver(tmp_path, system_dns.host, "360voice.techhalo.ai",
                                           "--expect", "20.124.179.20")
    assert (code, doc["status"], doc["message"]) == (
        0, "ok", "360voice.techhalo.ai A: 20.124.179.20")
    assert doc["details"]["nameserver"] == f"{system_dns.host}:53"
    assert system_dns.queries == [("360voice.techhalo.ai.", "A")]


def test_system_resolver_wrong_answer_fails(tmp_path: Path,
                                            system_dns: ScriptedDnsServer) -> None:
    system_dns.add("kafka-prod-new.techhalo.ai", "A", "20.124.179.20")
    code, doc = probe_with_system_resolver(tmp_path, system_dns.host,
                                           "kafka-prod-new.techhalo.ai", "--expect",
                                           "4.156.62.101")
    assert (code, doc["status"]) == (1, "failing")
    assert doc["message"] == ("kafka-prod-new.techhalo.ai A: expected 4.156.62.101, got "
                              "20.124.179.20 (missing 4.156.62.101; extra 20.124.179.20)")
