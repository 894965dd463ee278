"""Data-tier servers `controlplane demo` runs when their software is installed here.

- RabbitMQ: Debian's rabbitmq-server (scripts/setup.d/45-data-tier.sh), started from
  /usr/lib/rabbitmq/bin with its own HOME, cookie, node name and epmd port, AMQP and the
  management API on 127.0.0.1, a demo queue with a consumer.
- S3: moto's server mode (``moto[server]``), a versioned bucket with a lifecycle rule.

Each ``*_unavailable()`` says in one line why the service cannot run here, or None.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from controlplane.sandbox import localdata

log = logging.getLogger(__name__)

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rabbitmq_unavailable() -> str | None:
    if not (RABBIT_BIN / "rabbitmq-server").exists() or shutil.which("epmd") is None:
        return "no rabbitmq-server here (scripts/setup.d/45-data-tier.sh installs it)"
    return None


def s3_unavailable() -> str | None:
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask_cors") is None:
        return "moto[server] is not installed (pip install 'moto[server]')"
    return None


class LocalRabbitMq:
    """One RabbitMQ node for the demo; ``user``/``password`` may use the management API."""

    def __init__(self, workdir: str, tls: tuple[Path, Path] | None = None,
                 die_with_parent: bool = False, extra_conf: str = "") -> None:
        self.die_with_parent = die_with_parent
        self.extra_conf = extra_conf  # rabbitmq.conf lines added to the node's own
        self.root = Path(workdir) / "rabbitmq"
        self.tls = tls  # (chain file, key file): AMQPS on amqps_port too
        self.amqps_port = _free_port() if tls else 0
        self.amqp_port, self.mgmt_port = _free_port(), _free_port()
        self.epmd_port, self.dist_port = _free_port(), _free_port()
        self.node = f"cpdemo{self.epmd_port}@localhost"
        self.user, self.password = "monitor", secrets.token_urlsafe(12)
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def start(self, timeout: float = 120) -> LocalRabbitMq:
        home = self.root / "home"
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        (self.root / "empty.env").write_text("")
        (self.root / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.mgmt_port}\n"
            f"loopback_users = none\ndefault_user = {self.user}\n"
            f"default_pass = {self.password}\ndefault_user_tags.administrator = true\n"
            "disk_free_limit.absolute = 1MB\n"
            "collect_statistics_interval = 1000\n" + self._tls_conf() + self.extra_conf)
        dist_args = "-kernel inet_dist_use_interface {127,0,0,1}"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "empty.env"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": dist_args,
            "RABBITMQ_CTL_ERL_ARGS": dist_args}
        subprocess.run(["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1",
                        "-daemon"], env=self.env, check=True, timeout=10)
        with open(self.root / "server.out", "ab") as out:
            # With die_with_parent the script execs the VM (RUNNING_UNDER_SYSTEMD: no proxy
            # shell in between), so the parent-death signal reaches the broker itself.
            prefix = localdata.die_with_parent() if self.die_with_parent else []
            env = {**self.env, "RUNNING_UNDER_SYSTEMD": "1"} if prefix else self.env
            self.proc = subprocess.Popen([*prefix, str(RABBIT_BIN / "rabbitmq-server")], env=env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while self._ctl("await_startup", "--timeout", "60") != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq-server did not start; see {self.root}/server.out")
            time.sleep(0.5)
        self._declare_queue()
        return self

    def _tls_conf(self) -> str:
        if self.tls is None:
            return ""
        cert, key = self.tls
        return (f"listeners.ssl.default = 127.0.0.1:{self.amqps_port}\n"
                f"ssl_options.certfile = {cert}\nssl_options.keyfile = {key}\n"
                "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n")

    def _ctl(self, *args: str) -> int:
        return subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
                              env=self.env, capture_output=True, timeout=120).returncode

    def _declare_queue(self) -> None:
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.amqp_port, credentials=pika.PlainCredentials(self.user,
                                                                           self.password)))
        conn.channel().queue_declare("call_events", durable=True)
        conn.close()

    def stop(self) -> None:
        if self.proc is not None:
            if self._ctl("stop") != 0 and self.proc.poll() is None:
                os.killpg(self.proc.pid, 9)
            self.proc.wait(30)
            self.proc = None
        subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"], env=self.env,
                       capture_output=True, timeout=10)


class LocalS3:
    """moto's server mode on loopback with the demo's bucket."""

    bucket = "halovoiceaudiotranscripts"

    def __init__(self, workdir: str, die_with_parent: bool = False) -> None:
        self.die_with_parent = die_with_parent
        self.port = _free_port()
        self.log_file = Path(workdir) / "moto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> LocalS3:
        import boto3

        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [*(localdata.die_with_parent() if self.die_with_parent else []),
                 sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start; see {self.log_file}") \
                        from None
                time.sleep(0.2)
        s3 = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                          aws_access_key_id="AKIADEMO000000000000",
                          aws_secret_access_key="demo-secret")
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket,
                                 VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration={
            "Rules": [{"ID": "expire-noncurrent", "Status": "Enabled", "Filter": {"Prefix": ""},
                       "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]})
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
