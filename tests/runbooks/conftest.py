"""A control plane on disk for runbook tests: controlplane.yaml + runbooks/*.yaml in a
temp dir, loaded through the real loader, with a SQLite store and a fast engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.app import Runtime, build_runtime
from controlplane.config import ControlPlaneConfig, load_config
from controlplane.runbooks import audit, runs
from controlplane.runbooks.base import Services
from controlplane.runbooks.engine import Engine

TOKEN = "admin-token-for-tests"
FINAL = ("succeeded", "failed", "cancelled", "timed_out", "interrupted")


def write_site(tmp: Path, runbooks: list[dict[str, Any]], extra: dict[str, Any] | None = None,
               checks: list[dict[str, Any]] | None = None) -> str:
    (tmp / "runbooks").mkdir(exist_ok=True)
    for rb in runbooks:
        (tmp / "runbooks" / f"{rb['id']}.yaml").write_text(yaml.safe_dump(rb, sort_keys=False))
    doc: dict[str, Any] = {
        "environments": {"production": {"label": "Production"}},
        "store": {"dsn": f"sqlite:///{tmp / 'cp.db'}"},
        "web": {"admin_token": TOKEN},
        "check_files": [],
        "checks": checks or [],
        **(extra or {}),
    }
    path = tmp / "controlplane.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


@dataclass
class Site:
    config_path: str
    config: ControlPlaneConfig
    runtime: Runtime
    engine: Engine
    started: list[int] = field(default_factory=list)

    def start(self, rb_id: str, params: dict[str, Any] | None = None, by: str = "alice") -> int:
        run = runs.start(self.runtime.store, self.config.runbook(rb_id), params or {}, by,
                         "test")
        self.started.append(run.run_id)
        self.engine.wake()
        return run.run_id

    def run(self, run_id: int) -> dict[str, Any]:
        return runs.get(self.runtime.store, run_id)

    def wait(self, run_id: int, states: tuple[str, ...] = FINAL,
             timeout: float = 30.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in states:
                return run
            assert time.monotonic() < end, f"run {run_id} still {run['status']}: {run}"
            time.sleep(0.05)

    def wait_step(self, run_id: int, step: str, status: str,
                  timeout: float = 30.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            for st in self.run(run_id)["steps"]:
                if st["step"] == step and st["status"] == status:
                    return dict(st)
            assert time.monotonic() < end, f"step {step} never {status}: {self.run(run_id)}"
            time.sleep(0.05)

    def steps(self, run_id: int) -> list[tuple[str, str]]:
        return [(s["step"], s["status"]) for s in self.run(run_id)["steps"]]


MakeSite = Callable[..., Site]


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[MakeSite]:
    sites: list[Site] = []

    def make(runbooks: list[dict[str, Any]], extra: dict[str, Any] | None = None,
             checks: list[dict[str, Any]] | None = None, start: bool = True,
             stale_after_s: float = 15.0) -> Site:
        path = write_site(tmp_path, runbooks, extra, checks)
        cfg = load_config(path)
        rt = build_runtime(cfg)
        engine = Engine(rt.store, cfg.runbooks, Services(rt), poll_s=0.1, heartbeat_s=0.2,
                        stale_after_s=stale_after_s)
        audit.attach(rt, engine)
        rt.runbook_engine = engine
        if start:
            engine.start()
        site = Site(path, cfg, rt, engine)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.engine.stop()
        for run_id in site.started:
            site.engine.join(run_id, 10)
        site.runtime.stop(0)


def step(id_: str, action: str, **more: Any) -> dict[str, Any]:
    return {"id": id_, "action": action, **more}


def runbook(id_: str, steps: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {"id": id_, "title": f"Runbook {id_}", "owner": "dr-team", "steps": steps, **more}
