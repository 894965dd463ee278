"""The soak's moving parts: PostgreSQL, the sandbox, the Slack and Jira fakes, and two
`controlplane run` instances sharing the store; the fault script is played against them.

Everything runs on loopback. An instance that exits (SIGKILL by the script, or exit 1
after losing its store lock) is started again at once, as a service manager would.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.soak.script import Event, Script
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.platform import ENVIRONMENTS
from controlplane.sandbox.runner import Sandbox
from controlplane.sandbox.slack_fake import SlackFake
from tests.services.common import ROOT, free_port
from tests.services.postgres import PgServer, start_pg_server

log = logging.getLogger(__name__)


@dataclass
class Life:
    """One process of an instance, from start to exit."""
    pid: int
    started: float
    ended: float | None = None
    exit_code: int | None = None
    active_since: float | None = None
    rss: list[tuple[float, int, str]] = field(default_factory=list)  # (t, bytes, role)


class Instance:
    def __init__(self, name: str, config: Path, logfile: Path) -> None:
        self.name, self.config, self.logfile = name, config, logfile
        self.port = int(yaml.safe_load(config.read_text())["web"]["port"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives: list[Life] = []
        self.lock = threading.Lock()

    def start(self, t: float) -> None:
        with self.logfile.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controlplane", "--log-level", "INFO", "run",
                 "--config", str(self.config)], cwd=ROOT, stdout=out, stderr=out,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.lives.append(Life(self.proc.pid, t))

    def role(self) -> str:
        try:
            return str(requests.get(f"http://127.0.0.1:{self.port}/readyz",
                                    timeout=2).json().get("role") or "")
        except (requests.RequestException, ValueError):
            return ""

    def rss(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def reap(self, t: float) -> bool:
        """Record an exit; True when the process has gone."""
        if self.proc is None or self.proc.poll() is None:
            return False
        life = self.lives[-1]
        if life.ended is None:
            life.ended, life.exit_code = t, self.proc.returncode
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Takeover:
    at_s: float
    cause: str
    killed: str
    seconds: float | None  # None: nobody took over within the limit
    by: str = ""  # the instance that became active


class Soak:
    def __init__(self, script: Script, workdir: Path) -> None:
        self.script, self.workdir = script, workdir
        self.pg: PgServer | None = None
        self.dsn = ""
        self.sandbox: Sandbox | None = None
        self.slack = SlackFake()
        self.jira = JiraFake()
        self.instances: list[Instance] = []
        self.takeovers: list[Takeover] = []
        self.applied: list[tuple[float, Event]] = []
        self.t0 = 0.0
        self.end_s = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- set-up -------------------------------------------------------------------------

    def start(self) -> None:
        self.pg = start_pg_server()
        self.dsn = self.pg.createdb("soak")
        self.sandbox = Sandbox(directory=str(self.workdir / "sandbox")).start()
        self.slack.start()
        self.jira.start()
        self.t0 = time.monotonic()
        for name in ("a", "b"):
            inst = Instance(name, self._config(name), self.workdir / f"{name}.log")
            self.instances.append(inst)
            inst.start(self.now())
            if name == "a":  # a starts first and becomes active; b stands by
                self._wait(lambda inst=inst: inst.role() == "active", 120, "a active")
        self._wait(lambda: self.instances[1].role() == "standby", 120, "b standing by")
        self.t0 = time.monotonic()  # the script's clock starts with both instances up
        for inst in self.instances:
            inst.lives[-1].started = 0.0
            inst.lives[-1].active_since = 0.0 if inst.name == "a" else None
        for target in (self._supervise, self._sample):
            th = threading.Thread(target=target, daemon=True)
            th.start()
            self._threads.append(th)

    def _config(self, name: str) -> Path:
        sb = self.sandbox
        assert sb is not None and sb.twilio is not None
        halo, bic, voice = sb.port("halo_task"), sb.port("bic_agent"), sb.port("voice360")
        release = next(e for e in ENVIRONMENTS if e.name == "release")
        checks: list[dict[str, Any]] = [
            {"id": "http-halo-task-production", "kind": "http", "env": "production",
             "interval": "5s", "url": f"https://127.0.0.1:{halo}/health",
             "headers": {"Host": "api-halo-task.techhalo.ai"}, "contains": "Healthy",
             "ca_file": sb.ca_file},
            {"id": "http-voice360-production", "kind": "http", "env": "production",
             "interval": "5s", "url": f"https://127.0.0.1:{voice}/",
             "headers": {"Host": "360voice.techhalo.ai"}, "ca_file": sb.ca_file},
            {"id": "tls-idcard-staging", "kind": "tls", "env": "staging", "interval": "5s",
             "target": f"127.0.0.1:{bic}", "servername": "staging-sky.halo360.ai",
             "ca_file": sb.ca_file},
            {"id": "dns-idcard-production", "kind": "dns", "env": "production",
             "name": "bic-sky.halo360.ai", "interval": "10s", "expect": ["127.0.0.1"],
             "nameserver": sb.nameserver},
            {"id": "idcard-sms-release", "kind": "idcard_sms", "env": "release",
             "interval": "15s", "timeout": "30s",
             "api_url": sb.env_url(release, "api", ""), "api_token": sb.halo_token,
             "phone": release.phone,
             "twilio": {"account_sid": sb.twilio.account_sid,
                        "auth_token": sb.twilio.auth_token, "api_base": sb.url("twilio")},
             "ca_file": sb.ca_file, "nameserver": sb.nameserver, "poll_interval": "0.5s",
             "sla": {"receive_sms": "8s", "total": "30s"}},
        ]
        doc: dict[str, Any] = {
            "environments": {e.name: {"label": e.label, "public_ip": "127.0.0.1",
                                      "hosts": e.hosts} for e in ENVIRONMENTS},
            "store": {"dsn": self.dsn},
            "web": {"host": "127.0.0.1", "port": free_port()},
            "check_files": [],
            "defaults": {"failure_threshold": 2, "success_threshold": 1, "timeout": "10s"},
            "checks": checks,
            "incidents": {"tick_interval": "5s", "outbox": {
                "poll_interval": "0.5s", "backoff_initial": "1s", "backoff_max": "15s"}},
            "notifiers": {
                "slack": {"token": self.slack.token, "base_url": self.slack.api_url,
                          "channel": "C0ONCALL"},
                "jira": {"server": self.jira.url, "user": self.jira.user,
                         "token": self.jira.token, "project": "OPS", "reopen_window": "0s"}},
        }
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    # -- background: restarts and samples ----------------------------------------------

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            for inst in self.instances:
                with inst.lock:
                    if inst.reap(self.now()):
                        log.info("soak: restarting instance=%s exit=%s", inst.name,
                                 inst.lives[-1].exit_code)
                        inst.start(self.now())

    def _sample(self) -> None:
        while not self._stop.wait(5.0):
            for inst in self.instances:
                rss, role = inst.rss(), inst.role()
                if rss is None:
                    continue
                life = inst.lives[-1]
                life.rss.append((self.now(), rss, role))
                if role == "active" and life.active_since is None:
                    life.active_since = self.now()

    # -- the script ---------------------------------------------------------------------

    def play(self) -> None:
        for event in self.script.events:
            delay = event.at_s - self.now()
            if delay > 0 and self._stop.wait(delay):
                return
            self._apply(event)
            self.applied.append((self.now(), event))
        rest = self.script.profile.duration_s - self.now()
        if rest > 0:
            self._stop.wait(rest)
        self.end_s = self.now()

    def _apply(self, e: Event) -> None:
        sb = self.sandbox
        assert sb is not None and self.pg is not None
        log.info("soak: t=%.1f action=%s fault=%s", self.now(), e.action, e.fault)
        if e.action in ("kill_active", "pg_restart"):
            # Measured on a thread of its own so the script's other events stay on time.
            target = self._pg_restart if e.action == "pg_restart" else self._kill_active
            th = threading.Thread(target=target, daemon=True)
            th.start()
            self._threads.append(th)
        elif e.action == "slack_429":
            self.slack.rate_limit(self.script.profile.retry_after_s, count=None)
        elif e.action == "slack_500":
            self.slack.heal()
            self.slack.down(500)
        elif e.action == "slack_heal":
            self.slack.heal()
        elif e.action == "jira_down":
            self.jira.down(503)
        elif e.action == "jira_heal":
            self.jira.heal()
        elif e.action == "fault_set":
            sb.faults.set(e.fault, e.env)
        elif e.action == "fault_clear":
            sb.faults.clear(e.fault, e.env)

    def active(self) -> Instance | None:
        for inst in self.instances:
            if inst.role() == "active":
                return inst
        return None

    def _kill_active(self, cause: str = "kill -9") -> None:
        victim = self.active()
        if victim is None:
            log.warning("soak: no active instance to kill at t=%.1f", self.now())
            return
        start = time.monotonic()
        victim.kill9()
        took, by = self._until_any_active(start)
        self.takeovers.append(Takeover(self.now(), cause, victim.name, took, by))

    def _pg_restart(self) -> None:
        assert self.pg is not None
        start = time.monotonic()
        self.pg.stop("fast")
        time.sleep(3.0)  # a short outage, as a failover or a restart of the server is
        self.pg.start()
        took, by = self._until_any_active(start)
        self.takeovers.append(Takeover(self.now(), "PostgreSQL restart (3 s down)", "", took,
                                       by))

    def _until_any_active(self, start: float,
                          limit: float = 120.0) -> tuple[float | None, str]:
        """Seconds from ``start`` until an instance answers as the active one, and which."""
        while time.monotonic() - start < limit:
            inst = self.active()
            if inst is not None:
                return time.monotonic() - start, inst.name
            time.sleep(0.1)
        return None, ""

    # -- the end ------------------------------------------------------------------------

    def heal_all(self) -> None:
        assert self.sandbox is not None
        self.slack.heal()
        self.jira.heal()
        self.sandbox.faults.clear()

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=130)
        for inst in self.instances:
            inst.stop()
            inst.reap(self.now())
        for closer in (self.slack.stop, self.jira.stop):
            try:
                closer()
            except Exception:
                log.exception("soak: fake stop failed")
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.pg is not None:
            self.pg.destroy()

    @staticmethod
    def _wait(cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.2)
        raise RuntimeError(f"soak: timed out waiting for {what}")
