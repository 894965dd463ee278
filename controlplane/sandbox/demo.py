"""`controlplane demo` underneath: the sandbox, the SaaS fakes, the demo config, the timeline.

The timeline injects faults a newcomer can watch travel through the control plane:
the r121 drift at 1 min, SMS dropped at 3 min, both healed at 5 and 6 min. ``speed``
compresses it (speed 10 -> the r121 drift at 6 s), which the tests use.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from controlplane.config import ControlPlaneConfig, load_config
from controlplane.sandbox import jira_fake, slack_fake
from controlplane.sandbox.datatier import (
    LocalRabbitMq,
    LocalS3,
    rabbitmq_unavailable,
    s3_unavailable,
)
from controlplane.sandbox.kafka_broker import (
    DemoTraffic,
    KafkaBroker,
    kafka_libs,
    kafka_unavailable,
)
from controlplane.sandbox.localdata import Azurite, Postgres, azurite_binary, postgres_bindir
from controlplane.sandbox.runner import Sandbox, default_state_dir
from controlplane.sandbox.statuspage_fake import StatuspageFake
from controlplane.sandbox.vendor_api_fake import VendorApiFake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    at_s: float
    action: str  # "set" or "clear"
    fault: str
    env: str
    note: str


TIMELINE: tuple[Event, ...] = (
    Event(60, "set", "appconfig_staging", "production",
          "production appconfig.json now points at staging (the 0.1.27-r121 bug); watch "
          "config-drift-production and idcard-sms-production turn red"),
    Event(180, "set", "sms_dropped", "production",
          "Twilio now drops the ID-card SMS; idcard-sms-production fails at receive_sms"),
    Event(300, "clear", "appconfig_staging", "production",
          "appconfig.json fixed (image swapped); drift incident resolves"),
    Event(360, "clear", "sms_dropped", "production",
          "SMS flows again; the ID-card incident resolves"),
)


def demo_config_path(name: str = "demo.yaml") -> str:
    return str(resources.files("controlplane").joinpath(f"defaults/{name}"))


class Demo:
    """Everything `controlplane demo` starts; :meth:`stop` undoes it in reverse order."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080,
                 say: Callable[[str], None] = print) -> None:
        self.host, self.port, self.say = host, port, say
        self.workdir = tempfile.mkdtemp(prefix="cp-demo-")
        os.mkdir(os.path.join(self.workdir, "checks"))
        self.sandbox = Sandbox(directory=default_state_dir())
        self.admin_token = secrets.token_urlsafe(16)
        self.fakes: dict[str, tuple[str, Callable[[], None]]] = {}
        self._stop = threading.Event()
        self._timeline: threading.Thread | None = None
        self.postgres: Postgres | None = None
        self.azurite: Azurite | None = None
        self.kafka: KafkaBroker | None = None
        self.kafka_traffic: DemoTraffic | None = None
        self.rabbitmq: LocalRabbitMq | None = None
        self.s3: LocalS3 | None = None
        self.kube: Any = None
        self.blob_where = ""
        self.config_file = ""

    def start(self) -> ControlPlaneConfig:
        """Start the sandbox and fakes; return the loaded demo config (ConfigError if bad)."""
        self.sandbox.start()
        self._start_fakes()
        os.environ.update(self._variables())
        os.environ.update(self._start_data_services())
        os.environ.update(self._start_kafka())
        os.environ.update(self._start_rabbitmq())
        os.environ.update(self._start_s3())
        os.environ.update(self._start_kube())
        if self.postgres is not None or self.kube is not None:
            os.environ.update(self._backup_target())
        self.config_file = self._config_file()
        return load_config(self.config_file)

    def _start_data_services(self) -> dict[str, str]:
        """PostgreSQL to back up (if installed) and Azurite (if installed) as blob store."""
        bindir = postgres_bindir()
        if bindir is None:
            self.say("demo: no PostgreSQL binaries here; the postgres check, backups and "
                     "drills are left out")
            return {}
        os.chmod(self.workdir, 0o711)  # the postgres user must reach its data directory
        self.postgres = Postgres(self.workdir, bindir).start()
        env = {"DEMO_PG_DSN": self.postgres.seed("halotasks"),
               "DEMO_PG_PORT": str(self.postgres.port),
               "DEMO_PG_PASSWORD": self.postgres.password}
        self._add_checks("demo-postgres-check.yaml", "postgres.yaml")
        return env

    def _backup_target(self) -> dict[str, str]:
        """An age key, and Azurite (if installed) or a local folder as the blob store."""
        env = self._age_key()
        azurite = azurite_binary()
        if azurite is not None:
            self.azurite = Azurite(self.workdir, azurite).start()
            env.update(DEMO_BLOB_BACKEND="azure",
                       DEMO_BLOB_CONNECTION_STRING=self.azurite.connection_string,
                       DEMO_BLOB_PATH="backups")
            self.blob_where = f"Azurite on 127.0.0.1:{self.azurite.port}"
        else:
            path = os.path.join(self.workdir, "blobs")
            env.update(DEMO_BLOB_BACKEND="local", DEMO_BLOB_PATH=path)
            self.blob_where = f"the local folder {path}"
        return env

    def _start_kafka(self) -> dict[str, str]:
        """One local broker with the platform's topics and a trailing consumer group."""
        why = kafka_unavailable()
        libs = kafka_libs() if why is None else None
        if libs is None and shutil.which("java") is not None:
            # java but no jars yet: fetch them now, as scripts/setup.d/30-kafka.sh would
            from controlplane.sandbox.kafka_jars import fetch_kafka_jars

            libs, why = fetch_kafka_jars(self.say)
        if libs is None:
            self.say(f"demo: {why or 'no Kafka jars in $CONTROLPLANE_CACHE/kafka'}; "
                     "the Kafka checks are left out")
            return {}
        self.kafka = KafkaBroker(self.workdir, libs)  # set first: stop() kills a failed start
        self.kafka.start()
        self.kafka_traffic = DemoTraffic(self.kafka.bootstrap).start()
        shutil.copy(demo_config_path("demo-kafka-checks.yaml"),
                    os.path.join(self.workdir, "checks", "kafka.yaml"))
        return {"DEMO_KAFKA_BOOTSTRAP": self.kafka.bootstrap}

    def _start_rabbitmq(self) -> dict[str, str]:
        why = rabbitmq_unavailable()
        if why is not None:
            self.say(f"demo: {why}; the rabbitmq check is left out")
            return {}
        # set first: stop() ends a failed start
        self.rabbitmq = LocalRabbitMq(self.workdir, die_with_parent=True)
        self.rabbitmq.start()
        self._add_checks("demo-rabbitmq-check.yaml", "rabbitmq.yaml")
        return {"DEMO_RABBITMQ_PORT": str(self.rabbitmq.amqp_port),
                "DEMO_RABBITMQ_PASSWORD": self.rabbitmq.password,
                "DEMO_RABBITMQ_MGMT_URL": f"http://127.0.0.1:{self.rabbitmq.mgmt_port}"}

    def _start_s3(self) -> dict[str, str]:
        why = s3_unavailable()
        if why is not None:
            self.say(f"demo: {why}; the s3 check is left out")
            return {}
        self.s3 = LocalS3(self.workdir, die_with_parent=True)
        self.s3.start()
        self._add_checks("demo-s3-check.yaml", "s3.yaml")
        return {"DEMO_S3_URL": self.s3.url}

    def _add_checks(self, default: str, name: str) -> None:
        shutil.copy(demo_config_path(default), os.path.join(self.workdir, "checks", name))

    def _start_kube(self) -> dict[str, str]:
        """The Kubernetes test bed seeded with the platform's namespace, when it is built."""
        from controlplane.k8s import seed
        from controlplane.k8s.testbed import KubeCluster, TestBedError, missing_binaries

        if missing_binaries():
            self.say("demo: no Kubernetes test-bed binaries (run scripts/setup.d/"
                     "50-kubernetes.sh); the cluster checks are left out")
            return {}
        self.kube = KubeCluster(os.path.join(self.workdir, "kube"), die_with_parent=True)
        try:
            self.kube.start()
            self.kube.start_workers()
        except TestBedError as exc:
            self.say(f"demo: the Kubernetes test bed did not start ({exc.args[0].splitlines()[0]})"
                     "; the cluster checks are left out")
            return {}
        seed.seed(self.kube.api_client())
        self._add_checks("demo-kube-checks.yaml", "kube.yaml")
        return {"DEMO_KUBECONFIG": self.kube.kubeconfig("admin")}

    def _age_key(self) -> dict[str, str]:
        import pyrage

        identity = pyrage.x25519.Identity.generate()
        path = os.path.join(self.workdir, "backup-key.txt")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(identity) + "\n")
        return {"DEMO_AGE_RECIPIENT": str(identity.to_public()), "DEMO_AGE_IDENTITY": path}

    def _config_file(self) -> str:
        """demo.yaml, the notifiers (the Slack and Jira fakes), and backups of PostgreSQL and
        of the cluster's Secrets when they run."""
        parts = ["demo.yaml", "demo-notifiers.yaml"]
        if self.postgres is not None or self.kube is not None:
            parts.append("demo-backups.yaml")
        if self.postgres is not None:
            parts.append("demo-backups-postgres.yaml")
        if self.kube is not None:
            parts.append("demo-backups-kube.yaml")
        path = os.path.join(self.workdir, "demo.yaml")
        with open(path, "w", encoding="utf-8") as out:
            for name in parts:
                with open(demo_config_path(name), encoding="utf-8") as part:
                    out.write(part.read())
        return path

    def _start_fakes(self) -> None:
        """The Slack and Jira fakes the demo's notifiers post to, and the vendors' status
        pages and APIs its vendor checks read; one failing stops the demo."""
        for name, start in (("slack_fake", slack_fake.start), ("jira_fake", jira_fake.start)):
            url, stop = start("127.0.0.1", 0)
            self.fakes[name] = (url, stop)
        pages = StatuspageFake()
        pages.add_page("openai", "OpenAI", ["API", "ChatGPT"])
        pages.add_page("twilio", "Twilio", ["SMS", "Voice"])
        self.fakes["statuspage_fake"] = (pages.start("127.0.0.1", 0), pages.stop)
        apis = VendorApiFake()
        self.fakes["vendor_api_fake"] = (apis.start(), apis.stop)
        self._add_checks("demo-vendor-checks.yaml", "vendors.yaml")

    def _variables(self) -> dict[str, str]:
        sb = self.sandbox
        assert sb.twilio is not None
        env = {
            "DEMO_STORE_DSN": f"sqlite:///{os.path.join(self.workdir, 'controlplane.db')}",
            "DEMO_EXTRA_CHECKS": os.path.join(self.workdir, "checks", "*.yaml"),
            "DEMO_HOST": self.host, "DEMO_PORT": str(self.port),
            "DEMO_URL": f"http://{self.host}:{self.port}" if self.port else "",
            "DEMO_ADMIN_TOKEN": self.admin_token,
            "DEMO_HALO_PORT": str(sb.port("halo_task")), "DEMO_HALO_TOKEN": sb.halo_token,
            "DEMO_BIC_PORT": str(sb.port("bic_agent")),
            "DEMO_VOICE_PORT": str(sb.port("voice360")),
            "DEMO_TWILIO_SID": sb.twilio.account_sid, "DEMO_TWILIO_TOKEN": sb.twilio.auth_token,
            "DEMO_TWILIO_URL": sb.url("twilio"), "DEMO_TWILIO_PORT": str(sb.port("twilio")),
            "DEMO_CA_FILE": sb.ca_file,
            "DEMO_NAMESERVER": sb.nameserver,
        }
        for name, (url, _) in self.fakes.items():
            env[f"DEMO_{name.upper()}_URL"] = url
        return env

    def start_timeline(self, speed: float = 1.0) -> None:
        self._timeline = threading.Thread(target=self._run_timeline, args=(speed,),
                                          name="demo-timeline", daemon=True)
        self._timeline.start()

    def _run_timeline(self, speed: float) -> None:
        elapsed = 0.0
        for event in TIMELINE:
            if self._stop.wait((event.at_s - elapsed) / speed):
                return
            elapsed = event.at_s
            if event.action == "set":
                self.sandbox.faults.set(event.fault, event.env)
            else:
                self.sandbox.faults.clear(event.fault, event.env)
            minutes, seconds = divmod(int(event.at_s), 60)
            self.say(f"demo: t+{minutes}:{seconds:02d} {event.action} {event.fault} in "
                     f"{event.env}: {event.note}")
        self.say("demo: timeline done; inject your own faults with "
                 "`controlplane sandbox fault set NAME`")

    def prime_dr(self) -> None:
        """First backup and drill of each component right away (as the CLI would), so /dr
        has measures at once. Runs in the background; the schedule takes over afterwards."""
        if self.postgres is not None:
            threading.Thread(target=self._prime_dr, args=("postgres", "first backup and "
                             "restore drill done; see the DR dashboard"),
                             name="demo-dr-postgres", daemon=True).start()
        if self.kube is not None:
            threading.Thread(target=self._prime_dr, args=("kubernetes-secrets", "first Secrets "
                             "backup and drill done (kubernetes-secrets); see the DR dashboard"),
                             name="demo-dr-secrets", daemon=True).start()

    def _prime_dr(self, component: str, done: str) -> None:
        for action in ("backup", "drill"):
            if self._stop.is_set():
                return
            proc = subprocess.run(
                [sys.executable, "-m", "controlplane", action, "run", component, "--config",
                 self.config_file, "--quiet"], capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                self.say(f"demo: first {action} of {component} failed (exit "
                         f"{proc.returncode}): {proc.stderr.strip()[-300:]}")
                return
        self.say(f"demo: {done}")

    def guide(self, url: str) -> list[str]:
        return [
            f"demo: status page     {url}/",
            f"demo: incidents       {url}/incidents",
            f"demo: one check       {url}/checks/idcard-sms-production",
            f"demo: API             {url}/api/v1/checks   (admin token: {self.admin_token})",
            f"demo: metrics         {url}/metrics",
            f"demo: sandbox faults  controlplane sandbox fault list   "
            f"(API {self.sandbox.url('control')}/faults)",
            *self._fake_lines(),
            *([f"demo: DR dashboard    {url}/dr   (postgres on 127.0.0.1:{self.postgres.port} "
               f"backed up every 2 min to {self.blob_where}, restore drill every 4 min)"]
              if self.postgres else []),
            *([f"demo: Secrets backup  360voice-prod of the test-bed cluster every 2 min to "
               f"{self.blob_where}; drill every 4 min into a scratch namespace "
               "controlplane-drill-<id> (see /dr)"] if self.kube else []),
            *([f"demo: Kafka           {self.kafka.bootstrap}   (one KRaft broker; "
               "kafka-cluster-production stays degraded: single broker, no replication)"]
              if self.kafka else []),
            *([f"demo: RabbitMQ        amqp://127.0.0.1:{self.rabbitmq.amqp_port}, management "
               f"http://127.0.0.1:{self.rabbitmq.mgmt_port} (user monitor)"]
              if self.rabbitmq else []),
            *([f"demo: S3 (moto)       {self.s3.url}   (bucket {self.s3.bucket})"]
              if self.s3 else []),
            "demo: timeline        t+1:00 r121 drift, t+3:00 SMS dropped, t+5:00/6:00 healed",
            "demo: Ctrl-C stops everything",
        ]

    def _fake_lines(self) -> list[str]:
        slack, jira = self.fakes["slack_fake"][0], self.fakes["jira_fake"][0]
        return [f"demo: Slack (fake)    {slack}   (curl -H 'Authorization: Bearer "
                f"xoxb-sandbox-token' '{slack}/api/conversations.history?channel=C0ONCALL')",
                f"demo: Jira (fake)     {jira}   (curl -u controlplane@example.com:"
                f"jira-sandbox-token '{jira}/rest/api/2/search?jql=project=OPS')"]

    def stop(self) -> None:
        self._stop.set()
        if self._timeline is not None:
            self._timeline.join(timeout=5)
        for name, (_, stop) in reversed(list(self.fakes.items())):
            try:
                stop()
            except Exception:
                log.exception("demo fake stop failed name=%s", name)
        if self.kafka_traffic is not None:
            self.kafka_traffic.stop()
        for service in (self.s3, self.rabbitmq, self.kafka, self.azurite, self.postgres,
                        self.kube):
            if service is not None:
                try:
                    service.stop()
                except Exception:
                    log.exception("demo data service stop failed")
        self.sandbox.stop()
        try:
            shutil.rmtree(self.workdir)
        except OSError as exc:
            log.warning("demo work folder left behind path=%s error=%s", self.workdir, exc)
