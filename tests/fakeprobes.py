"""Probe kinds for exercising the scheduler and pipeline: scripted, sleeping, crashing.

They are real Probe implementations registered through the public registry, so the
scheduler, pipeline and web run unmodified code paths.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Literal

from controlplane.probes.base import CheckConfig, Outcome, Probe
from controlplane.results import Status

# Scripts of statuses per check id, consumed one per run (tests append to them).
SCRIPTS: dict[str, deque[Status]] = {}
RELEASE = threading.Event()


class ScriptedConfig(CheckConfig):
    kind: Literal["scripted"] = "scripted"
    sleep_s: float = 0.0
    hang: bool = False
    crash: bool = False
    marker: str = ""  # a file touched when a run starts (lets a test know a run is in flight)


class ScriptedProbe(Probe[ScriptedConfig]):
    """Returns the next scripted status (ok when the script is empty); may sleep/hang/crash."""

    kind = "scripted"
    config_model = ScriptedConfig

    def check(self) -> Outcome:
        if self.config.marker:
            with open(self.config.marker, "a") as fh:
                fh.write("start\n")
        if self.config.crash:
            raise RuntimeError("boom")
        if self.config.hang:
            RELEASE.wait(60)
        if self.config.sleep_s:
            time.sleep(self.config.sleep_s)
        script = SCRIPTS.get(self.config.id)
        status = script.popleft() if script else Status.OK
        return Outcome(status, f"scripted {status.value}", metrics={"value": 1.0})
