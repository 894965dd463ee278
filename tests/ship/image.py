"""Build the repository's Dockerfile with Debian's podman (vfs storage, runc, cgroupfs, no
network namespace: scripts/setup.d/65-image.sh writes its config) on the local Debian base
image, offline from the wheelhouse of the same script. The image is tagged with a hash of
everything the build reads, so a warm run finds it in podman's storage under
$CONTROLPLANE_CACHE/image and costs nothing; an older tag is removed when a new one is built
(vfs keeps full copies)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.ship.tools import ROOT, tool

CACHE = Path(os.environ.get("CONTROLPLANE_CACHE", Path.home() / ".cache" / "controlplane"))
IMAGE_DIR = CACHE / "image"
REPOSITORY = "localhost/controlplane"
CONTEXT = ["Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "controlplane.yaml",
           "controlplane", "checks", "runbooks", "deploy/platform"]
BUILD_TIMEOUT_S = 2400


def podman(*args: str, timeout: float = 300, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(IMAGE_DIR / "containers.conf"),
           "CONTAINERS_STORAGE_CONF": str(IMAGE_DIR / "storage.conf")}
    proc = subprocess.run([tool("podman"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


def context_digest(base: str) -> str:
    """sha256 over the base image's tag and every file of the build context (paths + bytes)."""
    h = hashlib.sha256(base.encode())
    for entry in CONTEXT:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.suffix != ".pyc")
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def base_image() -> str:
    marker = IMAGE_DIR / "base-image"
    if not marker.is_file() or not (IMAGE_DIR / "wheels").is_dir():
        pytest.fail("no local base image or wheelhouse: run scripts/setup.d/65-image.sh")
    base = marker.read_text().strip()
    if podman("image", "exists", base, check=False).returncode != 0:
        pytest.fail(f"{base} is not in podman's storage: run scripts/setup.d/65-image.sh")
    return base


def built_image() -> str:
    """The image of the current sources, built now if podman's storage does not have it."""
    base = base_image()
    tag = f"{REPOSITORY}:{context_digest(base)}"
    if podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    podman("build", "--quiet", "--layers=false", "--file", str(ROOT / "Dockerfile"),
           "--build-arg", f"PYTHON_IMAGE={base}", "--build-arg", "BUILD_PACKAGES=",
           "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "PIP_FIND_LINKS=/wheelhouse",
           "--volume", f"{(IMAGE_DIR / 'wheels').resolve()}:/wheelhouse:ro",
           "--tag", tag, str(ROOT), timeout=BUILD_TIMEOUT_S)
    _remove_older(tag)
    return tag


def _remove_older(keep: str) -> None:
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY).stdout
    for name in listed.split():
        if name != keep:
            podman("rmi", "--force", name, check=False)
    podman("image", "prune", "--force", check=False)  # the build stage's dangling image
