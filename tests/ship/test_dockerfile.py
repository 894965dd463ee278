"""The Dockerfile's promises, read from the file (tests/ship/test_image.py builds and runs
it): multi-stage, no compiler in the final stage, non-root numeric user, `controlplane run`
by default, and a build context without tests or local state."""

from __future__ import annotations

import re

from tests.ship.tools import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def final_stage() -> str:
    return DOCKERFILE.rsplit("\nFROM ", 1)[1]


def test_it_is_multi_stage_on_a_slim_python() -> None:
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in DOCKERFILE


def test_the_final_stage_has_no_compiler_and_runs_as_a_non_root_user() -> None:
    final = final_stage()
    assert "build-essential" not in final and "apt-get install" not in final
    assert "--no-index --find-links /wheels" in final  # only the wheels built before
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users == ["10001:10001"]


def test_it_runs_the_control_plane_and_writes_only_to_tmp() -> None:
    final = final_stage()
    assert 'ENTRYPOINT ["controlplane"]' in final and 'CMD ["run"]' in final
    assert "HOME=/tmp" in final and "TMPDIR=/tmp" in final and "WORKDIR /tmp" in final
    assert "HEALTHCHECK" not in final  # Kubernetes probes /healthz and /readyz
    assert "CONTROLPLANE_HOST=0.0.0.0" in final


def test_the_build_context_leaves_out_tests_and_local_state() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*"  # everything out, then only what the image needs back in
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "controlplane/", "controlplane.yaml",
                       "checks/", "runbooks/", "deploy/platform/"}


def test_offline_build_arguments_default_to_a_release_build() -> None:
    build = DOCKERFILE.split("\nFROM ${PYTHON_IMAGE}\n")[0]
    assert "ARG BUILD_PACKAGES=build-essential" in build
    assert re.findall(r"^ARG (PIP_\w+)$", build, re.M) == ["PIP_NO_INDEX", "PIP_FIND_LINKS"]
    assert "COPY deploy/platform /etc/controlplane/deploy/platform" in final_stage()
