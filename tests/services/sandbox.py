"""The simulated platform as a fixture: one sandbox per test session, faults cleared per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.config import EnvironmentConfig
from controlplane.probes.base import ProbeContext
from controlplane.probes.idcard_sms import IdCardSmsConfig
from controlplane.sandbox.platform import ENVIRONMENTS, env_by_name
from controlplane.sandbox.runner import Sandbox


@pytest.fixture(scope="session")
def sandbox_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(directory=str(tmp_path_factory.mktemp("sandbox"))).start()
    yield sb
    sb.stop()


@pytest.fixture
def sandbox(sandbox_platform: Sandbox) -> Iterator[Sandbox]:
    sandbox_platform.faults.clear()
    yield sandbox_platform
    sandbox_platform.faults.clear()
    assert sandbox_platform.twilio is not None
    sandbox_platform.twilio.cancel_pending()  # e.g. a text delayed 120 s by sms_delayed
    sandbox_platform.twilio.clear_fault()  # e.g. 429s a test asked of the Twilio API
    for env in ENVIRONMENTS:
        sandbox_platform.twilio.set_sms_url(env.phone, None)


def sandbox_context() -> ProbeContext:
    return ProbeContext(environments={e.name: EnvironmentConfig(label=e.label, hosts=e.hosts)
                                      for e in ENVIRONMENTS})


def idcard_config(sb: Sandbox, env: str = "production", **overrides: Any) -> IdCardSmsConfig:
    """An idcard_sms check against the sandbox; SLAs generous unless a test narrows them."""
    assert sb.twilio is not None
    e = env_by_name(env)
    raw: dict[str, Any] = {
        "id": f"idcard-{env}", "env": env, "timeout": 60,
        "api_url": sb.env_url(e, "api", ""), "api_token": sb.halo_token, "phone": e.phone,
        "twilio": {"account_sid": sb.twilio.account_sid, "auth_token": sb.twilio.auth_token,
                   "api_base": sb.url("twilio")},
        "ca_file": sb.ca_file, "nameserver": sb.nameserver, "poll_interval": 0.2,
        "sla": {"receive_sms": 30, "open_link": 30, "check_appconfig": 30, "download_pdf": 30,
                "request_link": 30, "check_link_host": 30, "total": 60},
    }
    raw.update(overrides)
    return IdCardSmsConfig.model_validate(raw)


def ca_path(sb: Sandbox) -> Path:
    return Path(sb.ca_file)


def write_config(path: Path, checks: list[dict[str, Any]], dsn: str | None = None,
                 extra: dict[str, Any] | None = None) -> Path:
    """A controlplane.yaml with the sandbox's environments and ``checks`` inline."""
    import yaml

    doc: dict[str, Any] = {
        "environments": {e.name: {"label": e.label, "public_ip": "127.0.0.1", "hosts": e.hosts}
                         for e in ENVIRONMENTS},
        "store": {"dsn": dsn or f"sqlite:///{path.parent / 'cp.db'}"},
        "web": {"host": "127.0.0.1", "port": 0},
        "check_files": [],
        "checks": checks,
        **(extra or {}),
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def idcard_check_dict(sb: Sandbox, env: str = "production", **overrides: Any) -> dict[str, Any]:
    """The YAML form of :func:`idcard_config` (secrets as plain strings, as YAML holds them)."""
    cfg = idcard_config(sb, env, **overrides)
    data = cfg.model_dump(mode="json", exclude_defaults=False)
    data["api_token"] = cfg.api_token.get_secret_value()
    data["twilio"]["auth_token"] = cfg.twilio.auth_token.get_secret_value()
    return data


class DemoProcess:
    """`controlplane demo` as a user runs it, in its own cache dir; stdout lines collected."""

    def __init__(self, cache: Path, *args: str, env: dict[str, str] | None = None) -> None:
        import os
        import subprocess
        import sys
        import threading

        from tests.services.common import ROOT

        self.cache = cache
        # Its own sandbox dir; the real cache stays, so the demo finds Azurite if installed.
        self.cli_env = {"CONTROLPLANE_SANDBOX_DIR": str(cache / "sandbox")}
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.cli_env, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "demo", "--port", "0", *args], cwd=ROOT,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout: float = 120.0) -> str:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no line starting {prefix!r}; output:\n" + "\n".join(self.lines))

    @property
    def url(self) -> str:
        return self.wait_line("demo: control plane on ").split()[-1]

    @property
    def admin_token(self) -> str:
        return self.wait_line("demo: API ").rstrip(")").split()[-1]

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=90)
        self._reader.join(timeout=10)
        return code


@pytest.fixture(scope="module")
def shared_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    """One `controlplane demo --no-timeline` per test module (it takes seconds to start)."""
    proc = DemoProcess(tmp_path_factory.mktemp("demo") / "cache", "--no-timeline")
    proc.wait_line("demo: control plane on ")
    yield proc
    proc.stop()


@pytest.fixture
def demo(shared_demo: DemoProcess) -> Iterator[DemoProcess]:
    """The module's demo, with every sandbox fault cleared after the test."""
    yield shared_demo
    import json

    import requests

    state = json.loads((shared_demo.cache / "sandbox" / "state.json").read_text())
    requests.delete(f"{state['control_url']}/faults", timeout=10)


@pytest.fixture
def own_demo(tmp_path: Path) -> Iterator[DemoProcess]:
    """A demo for this test alone (for tests that stop it)."""
    proc = DemoProcess(tmp_path / "cache", "--no-timeline")
    yield proc
    proc.stop()
