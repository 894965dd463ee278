"""The container image, built from the repository's Dockerfile by podman (tests/ship/image.py)
and run the way Kubernetes runs it: as its non-root user, with a read-only root filesystem
and a tmpfs on /tmp, without a network (podman's netns "none": loopback only)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controlplane.redact import RULES
from tests.services.common import run_cli
from tests.ship.image import built_image, podman
from tests.ship.tools import ROOT

pytestmark = pytest.mark.image

SHIPPED = "/etc/controlplane/controlplane.yaml"


@pytest.fixture(scope="module")
def image() -> str:
    return built_image()


@pytest.fixture(scope="module")
def server(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image as Kubernetes runs it: its entrypoint and command (`controlplane run` on the
    shipped config, its store in /tmp), a read-only root filesystem, a tmpfs on /tmp, no
    network. Yields the container's id once /healthz answers inside it. One container for
    every test: with vfs storage each new container copies the whole image."""
    smoke = tmp_path_factory.mktemp("smoke")
    (smoke / "smoke.yaml").write_text(yaml.safe_dump({
        "environments": {"image": {"label": "Image", "hosts": {"self": "127.0.0.1"}}},
        "store": {"dsn": "sqlite:////tmp/smoke.db"},
        "check_files": [],
        "checks": [{"id": "healthz", "kind": "http", "env": "image",
                    "url": "http://127.0.0.1:8080/healthz", "contains": '"status":"ok"'}],
    }))
    smoke.chmod(0o755)
    (smoke / "smoke.yaml").chmod(0o644)
    cid = podman("run", "--detach", "--read-only", "--tmpfs", "/tmp",
                 "--volume", f"{smoke}:/smoke:ro", image, timeout=600).stdout.strip()
    try:
        deadline = time.monotonic() + 120
        while exec_in(cid, "python", "-c", HEALTHZ, check=False).returncode != 0:
            state = podman("inspect", "--format", "{{.State.Status}}", cid).stdout.strip()
            if state != "running" or time.monotonic() > deadline:
                logs = podman("logs", cid, check=False)
                pytest.fail(f"the server never answered /healthz ({state}): "
                            f"{logs.stdout[-2000:]} {logs.stderr[-2000:]}")
            time.sleep(0.5)
        yield cid
    finally:
        podman("rm", "--force", "--time", "1", cid, check=False, timeout=300)


HEALTHZ = ("import urllib.request as u; r = u.urlopen('http://127.0.0.1:8080/healthz', "
           "timeout=5); print(r.status, r.read().decode().strip())")


def exec_in(cid: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return podman("exec", cid, *cmd, check=check)


def test_image_prints_the_version_of_its_sources(server: str) -> None:
    proc = exec_in(server, "controlplane", "--version")
    assert proc.stdout == run_cli("--version").stdout == "controlplane 0.1.0\n"


def test_image_validates_the_config_it_ships(server: str) -> None:
    proc = exec_in(server, "controlplane", "validate")  # $CONTROLPLANE_CONFIG: the shipped one
    here = run_cli("validate", "--config", str(ROOT / "controlplane.yaml"))
    assert here.returncode == 0, here.stderr
    assert proc.stdout == here.stdout.replace(str(ROOT / "controlplane.yaml"), SHIPPED)
    assert re.fullmatch(rf"{SHIPPED}: valid \(\d+ checks, 4 environments, \d+ runbooks\)\n",
                        proc.stdout)


def test_image_runs_as_a_non_root_user_on_a_read_only_root(image: str, server: str) -> None:
    (meta,) = json.loads(podman("image", "inspect", image).stdout)
    assert meta["Config"]["User"] == "10001:10001"
    assert meta["Config"]["Entrypoint"] == ["controlplane"]
    assert meta["Config"]["Cmd"] == ["run"]
    proc = exec_in(server, "python", "-c",
                   "import os; status = open('/proc/1/status').read().split('\\n'); "
                   "args = open('/proc/1/cmdline').read().split(chr(0))[-3:-1]; "
                   "print([os.path.basename(a) for a in args], "
                   "[line.split()[1] for line in status if line[:4] in ('Uid:', 'Gid:')], "
                   "os.access('/', os.W_OK), os.access('/tmp', os.W_OK))")
    # PID 1 is the server (`controlplane run`) as uid/gid 10001; only /tmp is writable
    assert proc.stdout == "['controlplane', 'run'] ['10001', '10001'] False True\n"


def test_server_in_the_image_answers_healthz(server: str) -> None:
    assert exec_in(server, "python", "-c", HEALTHZ).stdout == '200 {"status":"ok"}\n'


def test_smoke_in_the_image_passes_against_its_own_server(server: str) -> None:
    proc = exec_in(server, "controlplane", "smoke", "--config", "/smoke/smoke.yaml",
                   "--env", "image", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line, summary = proc.stdout.splitlines()
    assert re.fullmatch(r"OK +\d+\.\d{3}s +healthz +200 OK", line), line
    assert re.fullmatch(r"smoke image: PASSED: 1 checks, 1 ok, 0 degraded, 0 failing, "
                        r"0 error in \d+\.\d\ds", summary), summary


SECRET_FILES = re.compile(r"(^\.env$|\.pem$|\.key$|\.p12$|\.pfx$|^id_(rsa|ed25519|ecdsa)$|"
                          r"^credentials$|kubeconfig)")
SHAPES = {"pem-private-key", "age-secret-key", "jwt", "slack-token", "slack-webhook",
          "aws-access-key-id", "stripe-key", "openai-key", "twilio-api-key", "sentry-token",
          "github-token", "google-api-key", "paypal-braintree-token", "azure-storage-key"}
"""controlplane/redact.py's credential shapes (not its key=value rule: the shipped config
names secrets as ${VARIABLE} references, which that rule would flag)."""
DEMO_FAKES = {"xoxb-sandbox-token", "AKIADEMO000000000000", "sk_test_fake00000000000000001234",
              "sk-proj-fakekey0000000000000000abcd"}
"""The simulated platform's made-up credentials (controlplane/sandbox, demo defaults)."""


def credentials(root: Path, files: list[Path]) -> set[tuple[str, str]]:
    found = set()
    for path in files:
        text = path.read_text(errors="replace")
        for rule in RULES:
            if rule.name in SHAPES:
                found |= {(str(path.relative_to(root)), m.group(0))
                          for m in rule.pattern.finditer(text)}
    return found


def test_image_holds_no_secrets(image: str) -> None:
    (meta,) = json.loads(podman("image", "inspect", image).stdout)
    env = dict(e.split("=", 1) for e in meta["Config"]["Env"])
    assert {k for k in env if re.search(r"(?i)token|password|secret|dsn|key", k)} == set()
    root = Path(podman("image", "mount", image).stdout.strip())
    try:
        ours = [root / "etc" / "controlplane", root / "tmp", root / "root", root / "home",
                *root.glob("opt/controlplane/lib/python3*/site-packages/controlplane")]
        assert len(ours) == 5 and all(p.is_dir() for p in ours), ours
        files = [p for d in ours for p in d.rglob("*") if p.is_file() and p.suffix != ".pyc"]
        assert len(files) > 100
        assert [p for p in files if SECRET_FILES.search(p.name)] == []
        found = credentials(root, files)
        assert {value for _, value in found} == DEMO_FAKES  # nothing real, nothing else
        places = {path.split("site-packages/controlplane/", 1)[1].split("/")[0]
                  for path, _ in found}
        assert places == {"sandbox", "defaults"}
        assert sorted(p.name for p in (root / "tmp").iterdir()) == []
    finally:
        podman("image", "unmount", image, check=False)
