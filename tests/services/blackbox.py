"""Prometheus blackbox_exporter (Debian `prometheus-blackbox-exporter`) on a loopback port.

Used as a peer: the same TLS endpoints are probed by it and by us, and the answers compared.
Installed by scripts/setup.d/20-blackbox-exporter.sh.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.services.common import free_port

BINARY = "prometheus-blackbox-exporter"


class BlackboxExporter:
    """``with BlackboxExporter(dir, modules) as bb: bb.probe(target, module)``."""

    def __init__(self, directory: Path, modules: dict[str, Any]) -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            raise RuntimeError(f"{BINARY} is not installed; run "
                               "scripts/setup.d/20-blackbox-exporter.sh (or scripts/test)")
        self.binary = binary
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "blackbox.yml"
        self.config.write_text(yaml.safe_dump({"modules": modules}))
        self.log = self.dir / "blackbox.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BlackboxExporter:
        check = subprocess.run([self.binary, f"--config.file={self.config}", "--config.check"],
                               capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise RuntimeError(f"blackbox config rejected: {check.stderr}")
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=debug"],
                stdout=log, stderr=subprocess.STDOUT)
        self._wait_healthy()
        return self

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"blackbox_exporter exited: {self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/-/healthy", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"blackbox_exporter not healthy after {timeout}s: "
                           f"{self.log.read_text()}")

    def probe(self, target: str, module: str) -> dict[str, float]:
        """One /probe call: its metrics as {name: value} (unlabelled samples only)."""
        resp = requests.get(f"{self.url}/probe", params={"target": target, "module": module},
                            timeout=60)
        resp.raise_for_status()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(resp.text):
            for sample in family.samples:
                if not sample.labels:
                    out[sample.name] = sample.value
        return out

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None

    def __enter__(self) -> BlackboxExporter:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
