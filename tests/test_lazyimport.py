"""Start-up stays short (bench/startup measures it): validating the repository's whole
config, as `controlplane smoke` and `validate` do, loads none of the heavy client libraries;
they load when a probe first uses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.lazyimport import lazy_module
from tests.ship.tools import ROOT

HEAVY = ["sqlalchemy", "alembic", "kubernetes", "azure", "jira", "slack_sdk", "twilio",
         "boto3", "botocore", "pika", "psycopg", "requests", "OpenSSL", "cryptography",
         "apscheduler", "flask", "confluent_kafka"]

PROGRAM = """
import json, sys
from controlplane.config import load_config
cfg = load_config(sys.argv[1])
print(json.dumps({"checks": len(cfg.checks),
                  "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:]))}))
"""


def test_validating_the_shipped_config_loads_no_heavy_client_library() -> None:
    proc = subprocess.run([sys.executable, "-c", PROGRAM, str(ROOT / "controlplane.yaml"),
                           *HEAVY], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["checks"] > 50  # every kind's config model was built
    assert out["loaded"] == []


def test_a_lazy_module_imports_on_first_use(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lazy_target_module.py").write_text("LOADS = []\nLOADS.append(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = lazy_module("lazy_target_module")
    assert "lazy_target_module" not in sys.modules
    assert module.LOADS == [1]  # the real module's attribute, read through the stand-in
    assert module.LOADS is sys.modules["lazy_target_module"].LOADS
    monkeypatch.delitem(sys.modules, "lazy_target_module")
