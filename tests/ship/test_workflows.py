"""GitHub Actions workflows, checked by actionlint (with shellcheck for the `run:` scripts),
and the caller snippet of docs/deploy.md checked against the reusable workflow's inputs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.ship.tools import ROOT, tool

WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("actionlint"), f"-shellcheck={tool('shellcheck')}",
                           "-no-color", *map(str, files)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_actionlint_and_shellcheck_accept_every_workflow() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "post-deploy-smoke.yml", "release.yml"]
    proc = actionlint(*files)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_actionlint_reports_a_shell_mistake(tmp_path: Path) -> None:
    """The check can fail: an unquoted variable in a run: script is shellcheck's SC2086."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: rm -rf $TARGET/cache\n")
    proc = actionlint(bad, cwd=tmp_path)
    assert proc.returncode == 1
    assert "SC2086" in proc.stdout


def test_ci_runs_the_readme_test_command_with_the_cache() -> None:
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    assert set(ci[True]) == {"push", "pull_request"}  # YAML 1.1 reads `on` as True
    steps = ci["jobs"]["test"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any(r.startswith("scripts/test") for r in runs)
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"].endswith("/.cache/controlplane")
    # podman builds and runs the image inside the job's container (tests/ship/test_image.py)
    assert ci["jobs"]["test"]["container"] == {"image": "python:3.11-bookworm",
                                               "options": "--privileged"}


def test_release_scans_before_it_pushes_and_logs_in_with_oidc() -> None:
    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    assert release["permissions"]["id-token"] == "write"
    names = [s.get("name", s.get("uses", "")) for s in release["jobs"]["image"]["steps"]]
    trivy = names.index("Trivy gate (CRITICAL, HIGH)")
    assert trivy < names.index("Push the scanned image")
    scan = release["jobs"]["image"]["steps"][trivy]["with"]
    assert (scan["severity"], scan["exit-code"]) == ("CRITICAL,HIGH", "1")
    assert "bench/RESULTS.md" in release["jobs"]["github-release"]["steps"][-1]["run"]


def test_the_deploy_doc_snippet_calls_the_reusable_workflow_correctly(tmp_path: Path) -> None:
    """docs/deploy.md's 6-line snippet, pasted into a deploy workflow, passes actionlint
    against this repository's post-deploy-smoke inputs."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    snippet = re.search(r"```yaml\n(  smoke:\n.*?)```", doc, re.S)
    assert snippet is not None
    lines = snippet.group(1).rstrip("\n").splitlines()
    assert len(lines) == 6
    local = snippet.group(1).replace(
        "techhalo/controlplane/.github/workflows/post-deploy-smoke.yml@v0.1.0",
        "./.github/workflows/post-deploy-smoke.yml")
    assert local != snippet.group(1)
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    # actionlint reads local reusable workflows from the repository it is in
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(WORKFLOWS / "post-deploy-smoke.yml", workflows)
    (workflows / "deploy.yml").write_text(
        "on: push\njobs:\n  deploy:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: helm upgrade --install voice360 ./chart --wait\n" + local)
    proc = actionlint(workflows / "deploy.yml", workflows / "post-deploy-smoke.yml",
                      cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "")
    # and a misspelled input is caught
    (workflows / "deploy.yml").write_text((workflows / "deploy.yml").read_text().replace(
        "environment:", "enviroment:"))
    proc = actionlint(workflows / "deploy.yml", cwd=tmp_path)
    assert proc.returncode == 1 and "enviroment" in proc.stdout
