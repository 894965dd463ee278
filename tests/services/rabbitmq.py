"""A real RabbitMQ (Debian's rabbitmq-server 3.10) with the management plugin and TLS.

Started from /usr/lib/rabbitmq/bin (the /usr/sbin wrappers switch to the rabbitmq user)
with its own HOME and Erlang cookie, node name, epmd on its own port, and every listener
on 127.0.0.1: AMQP, AMQPS (a test CA's chain) and the management HTTP API.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.services.certs import CertFactory
from tests.services.common import free_port

BINDIR = "/usr/lib/rabbitmq/bin"
USER = "monitor"
PASSWORD = "s3cret-rabbit-pass"


@dataclass
class RabbitServer:
    root: Path
    amqp_port: int
    amqps_port: int
    mgmt_port: int
    epmd_port: int
    dist_port: int
    node: str
    ca_file: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def mgmt_url(self) -> str:
        return f"http://127.0.0.1:{self.mgmt_port}"

    def ctl(self, *args: str, timeout: float = 60) -> str:
        out = subprocess.run([f"{BINDIR}/rabbitmqctl", "-n", self.node, *args], env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        resp = requests.request(method, f"{self.mgmt_url}/api/{path}", auth=(USER, PASSWORD),
                                timeout=10, **kw)
        resp.raise_for_status()
        return resp

    def start(self) -> None:
        log = open(self.root / "server.out", "ab")  # noqa: SIM115 - kept by the child
        self.proc = subprocess.Popen([f"{BINDIR}/rabbitmq-server"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        # await_startup needs the node registered in epmd first: poll until it is
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: see {self.root}/server.out")
            try:
                self.ctl("await_startup", "--timeout", "90", timeout=120)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.ctl("stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, 9)
        self.proc.wait(30)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        subprocess.run([f"{BINDIR}/rabbitmqctl", "-n", self.node, "stop"], env=self.env,
                       capture_output=True, timeout=30)
        # epmd was started for this server alone, on its own port
        subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"], capture_output=True,
                       env=self.env, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def _config(server: RabbitServer, certs: CertFactory) -> None:
    tls = certs.server(["localhost", "127.0.0.1"])
    (server.root / "rabbitmq.conf").write_text(f"""\
listeners.tcp.default = 127.0.0.1:{server.amqp_port}
listeners.ssl.default = 127.0.0.1:{server.amqps_port}
ssl_options.certfile = {tls.cert_file}
ssl_options.keyfile = {tls.key_file}
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
management.tcp.ip = 127.0.0.1
management.tcp.port = {server.mgmt_port}
loopback_users = none
default_user = {USER}
default_pass = {PASSWORD}
default_user_tags.administrator = true
vm_memory_high_watermark.relative = 0.4
disk_free_limit.absolute = 1MB
collect_statistics_interval = 1000
management.rates_mode = basic
""")
    server.ca_file = tls.ca_file
    (server.root / "enabled_plugins").write_text("[rabbitmq_management].\n")


def start_rabbit() -> RabbitServer:
    root = Path(tempfile.mkdtemp(prefix="cp-rabbit-"))
    home = root / "home"
    home.mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16))
    cookie.chmod(0o400)
    (root / "empty.env").write_text("")
    epmd_port, dist_port = free_port(), free_port()
    server = RabbitServer(root=root, amqp_port=free_port(), amqps_port=free_port(),
                          mgmt_port=free_port(), epmd_port=epmd_port, dist_port=dist_port,
                          node=f"cptest{epmd_port}@localhost", ca_file=Path())
    _config(server, CertFactory(root / "certs"))
    server.env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "RABBITMQ_CONF_ENV_FILE": str(root / "empty.env"),
        "RABBITMQ_NODENAME": server.node, "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"), "RABBITMQ_LOG_BASE": str(root / "log"),
        "RABBITMQ_DIST_PORT": str(dist_port), "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    subprocess.run(["epmd", "-port", str(epmd_port), "-address", "127.0.0.1", "-daemon"],
                   env=server.env, check=True, timeout=10)
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    _await_management(server)
    return server


def _await_management(server: RabbitServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.api("GET", "overview")
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitServer]:
    """One broker for the session; tests use their own queues."""
    server = start_rabbit()
    yield server
    server.destroy()
