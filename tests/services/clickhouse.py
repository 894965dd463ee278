"""A real ClickHouse server (Debian's clickhouse-server 18.16) on loopback, HTTP and HTTPS.

Its own config file, ports and paths in a temp dir; a `monitor` user with a password; the
HTTPS port serves a test CA's chain. Ready in well under a second.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.services.certs import CertFactory
from tests.services.common import free_port

BINARY = "/usr/sbin/clickhouse-server"
USER = "monitor"
PASSWORD = "s3cret-ch-pass"


@dataclass
class ClickHouseServer:
    root: Path
    http_port: int
    https_port: int
    ca_file: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def query(self, sql: str) -> str:
        resp = requests.post(self.url, data=sql.encode(), auth=(USER, PASSWORD), timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"clickhouse: {resp.content.decode()}")
        return resp.content.decode()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _config(root: Path, http_port: int, https_port: int, tcp_port: int, cert: Path,
            key: Path) -> Path:
    for sub in ("data", "tmp", "user_files", "format_schemas"):
        (root / sub).mkdir()
    (root / "users.xml").write_text(f"""<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
  <users>
    <{USER}>
      <password>{PASSWORD}</password>
      <networks><ip>::1</ip><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </{USER}>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
""")
    config = root / "config.xml"
    config.write_text(f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{root}/server.log</log>
    <errorlog>{root}/server.err.log</errorlog><console>0</console></logger>
  <http_port>{http_port}</http_port>
  <https_port>{https_port}</https_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <openSSL><server>
    <certificateFile>{cert}</certificateFile><privateKeyFile>{key}</privateKeyFile>
    <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>
    <disableProtocols>sslv2,sslv3</disableProtocols>
  </server></openSSL>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>{root}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>20</max_concurrent_queries>
</yandex>
""")
    return config


def start_clickhouse() -> ClickHouseServer:
    root = Path(tempfile.mkdtemp(prefix="cp-ch-"))
    tls = CertFactory(root / "certs").server(["localhost", "127.0.0.1"])
    http_port, https_port = free_port(), free_port()
    config = _config(root, http_port, https_port, free_port(), tls.cert_file, tls.key_file)
    out = open(root / "stdout.log", "ab")  # noqa: SIM115 - kept by the child
    proc = subprocess.Popen([BINARY, f"--config-file={config}"], cwd=root,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = ClickHouseServer(root, http_port, https_port, tls.ca_file, proc)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{server.url}/ping", timeout=2).content == b"Ok.\n":
                return server
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            err = (root / "server.err.log").read_text() if (root / "server.err.log").exists() \
                else ""
            server.destroy()
            raise RuntimeError(f"clickhouse-server did not start: {err[-2000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def clickhouse() -> Iterator[ClickHouseServer]:
    server = start_clickhouse()
    yield server
    server.destroy()
