"""A control plane with two schedules (Berlin and New York) and four people."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config

TOKEN = "oncall-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

ONCALL = """
oncall:
  people:
    alice: {name: Alice Martin, slack: U0ALICE01, phone: "+4915110000001",
            email: alice@techhalo.ai, timezone: Europe/Berlin}
    bob: {name: Bob Stone, slack: U0BOB0001, phone: "+4915110000002",
          email: bob@techhalo.ai, timezone: Europe/Berlin}
    carol: {name: "Carol Diaz, SRE", phone: "+12125550003", timezone: America/New_York}
    dave: {name: Dave Okafor, phone: "+12125550004", timezone: America/New_York}
    manager: {name: Dana Fox, phone: "+4915110000009", email: dana@techhalo.ai}
  schedules:
    primary:
      name: Platform primary
      timezone: Europe/Berlin
      layers:
        - {rotation: weekly, handoff: "09:00", start: 2026-11-30, people: [alice, bob]}
    secondary:
      name: Platform secondary
      timezone: America/New_York
      layers:
        - {rotation: daily, handoff: "09:00", start: 2026-11-30, people: [carol, dave]}
"""


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "controlplane.yaml"
    path.write_text(f"environments: {{production: {{}}}}\n"
                    f"store: {{dsn: 'sqlite:///{tmp_path / 'cp.db'}'}}\n"
                    f"web: {{admin_token: {TOKEN}}}\ncheck_files: []\n" + ONCALL + extra)
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def rt(config_path: Path) -> Iterator[Runtime]:
    runtime = build_runtime(load_config(str(config_path)))
    yield runtime
    runtime.stop(0)
