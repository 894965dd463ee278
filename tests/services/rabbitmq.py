"""A real RabbitMQ (Debian's rabbitmq-server 3.10) with the management plugin and TLS.

The node is the demo's (controlplane/sandbox/datatier.py: started from /usr/lib/rabbitmq/bin
with its own HOME and Erlang cookie, node name and epmd port, every listener on 127.0.0.1)
plus an AMQPS listener serving a test CA's chain for ``localhost``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from controlplane.sandbox.datatier import RABBIT_BIN, LocalRabbitMq
from tests.services.certs import CertFactory

USER = "monitor"
PASSWORD = "s3cret-rabbit-pass"


class RabbitServer(LocalRabbitMq):
    def __init__(self, workdir: Path, extra_conf: str = "") -> None:
        files = CertFactory(workdir / "certs").server(["localhost", "127.0.0.1"])
        super().__init__(str(workdir), tls=(files.cert_file, files.key_file),
                         extra_conf=extra_conf)
        self.workdir = workdir
        self.ca_file = files.ca_file
        self.user, self.password = USER, PASSWORD

    @property
    def mgmt_url(self) -> str:
        return f"http://127.0.0.1:{self.mgmt_port}"

    def ctl(self, *args: str, timeout: float = 60) -> str:
        out = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
                             env=self.env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        resp = requests.request(method, f"{self.mgmt_url}/api/{path}", auth=(USER, PASSWORD),
                                timeout=10, **kw)
        resp.raise_for_status()
        return resp

    def await_management(self, timeout: float = 60, node_stats: bool = True) -> None:
        """Until the API answers and, with ``node_stats``, the node has reported its memory
        and disk figures (a just-started node is listed without them for a few seconds,
        which the probe rightly calls degraded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("GET", "overview")
                if not node_stats or all("mem_alarm" in n
                                         for n in self.api("GET", "nodes").json()):
                    return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.node} reported no stats within {timeout:g}s")
            time.sleep(0.3)


def start_rabbit(extra_conf: str = "", node_stats: bool = True) -> RabbitServer:
    server = RabbitServer(Path(tempfile.mkdtemp(prefix="cp-rabbit-")), extra_conf)
    try:
        server.start()
        server.await_management(node_stats=node_stats)
    except BaseException:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitServer]:
    """One broker for the session; tests use their own queues."""
    server = start_rabbit()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def rabbit_without_stats() -> Iterator[RabbitServer]:
    """A broker with the management agent's metrics collector off (a Prometheus-only set-up):
    /api/nodes lists the node without any memory or disk figures or alarm flags."""
    server = start_rabbit("management_agent.disable_metrics_collector = true\n",
                          node_stats=False)
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)
