"""`controlplane sandbox fault ...` against a running sandbox, and `sandbox run` end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlplane.probes.idcard_sms import IdCardSmsProbe
from controlplane.results import Status
from controlplane.sandbox.runner import Sandbox
from tests.services.common import ROOT, run_cli
from tests.services.sandbox import idcard_config, sandbox_context

# Every fault of the simulated platform, set through the CLI: the step of idcard_sms it
# breaks (or degrades), and how its message begins.
CLI_FAULTS = [
    ("sms_delayed", ["--param", "delay=120"], "receive_sms", Status.FAILING,
     "no SMS delivered to +15550100001 within 2s"),
    ("sms_dropped", [], "receive_sms", Status.FAILING,
     "no SMS delivered to +15550100001 within 2s"),
    ("wrong_link_host", [], "check_link_host", Status.FAILING,
     "link host links.halo360.ai is not production front end bic-sky.halo360.ai"),
    ("appconfig_staging", [], "check_appconfig", Status.FAILING,
     "appconfig.json apiUrl is https://api-halo-task-staging.techhalo.ai:"),
    ("pdf_broken", [], "download_pdf", Status.FAILING,
     "the PDF (73 bytes) cannot be opened: PdfReadError: EOF marker not found"),
    ("halo_task_500", [], "request_link", Status.FAILING,
     "halo-task API answered 500 to POST /api/idcards/send-link"),
    ("cert_expiring", [], "open_link", Status.DEGRADED,
     "certificate of bic-sky.halo360.ai expires in "),
    ("cert_expired", [], "open_link", Status.FAILING,
     "TLS verification failed for bic-sky.halo360.ai:"),
    ("dns_wrong_ip", [], "open_link", Status.FAILING, "cannot connect to bic-sky.halo360.ai:"),
]


def test_fault_set_list_clear_round_trip(sandbox: Sandbox) -> None:
    url = sandbox.url("control")
    r = run_cli("sandbox", "fault", "set", "sms_delayed", "--env", "staging", "--param",
                "delay=120", "--url", url)
    assert (r.returncode, r.stdout) == (0, "fault set: sms_delayed in staging (delay=120)\n")
    assert sandbox.faults.active("sms_delayed", "staging") == {"delay": "120"}
    r = run_cli("sandbox", "fault", "list", "--url", url)
    assert r.returncode == 0
    assert "  sms_delayed        staging     delay=120\n" in r.stdout
    assert "  appconfig_staging  appconfig.json points at another environment" in r.stdout
    r = run_cli("sandbox", "fault", "list", "--json", "--url", url)
    assert [f["name"] for f in json.loads(r.stdout)["faults"]] == ["sms_delayed"]
    r = run_cli("sandbox", "fault", "clear", "sms_delayed", "--url", url)
    assert (r.returncode, r.stdout) == (0, "cleared 1 fault(s)\n")
    assert sandbox.faults.list() == []


def test_fault_set_with_unknown_name_exits_2_with_the_valid_names(sandbox: Sandbox) -> None:
    r = run_cli("sandbox", "fault", "set", "meteor", "--url", sandbox.url("control"))
    assert r.returncode == 2
    assert r.stderr.startswith("controlplane: unknown fault 'meteor'; use one of: sms_delayed")


def test_fault_cli_finds_the_sandbox_through_its_state_file(sandbox: Sandbox,
                                                            tmp_path: Path) -> None:
    state = tmp_path / "cache" / "sandbox"
    state.mkdir(parents=True)
    (state / "state.json").write_text(json.dumps({"control_url": sandbox.url("control")}))
    r = run_cli("sandbox", "fault", "set", "pdf_broken",
                env={"CONTROLPLANE_CACHE": str(tmp_path / "cache")})
    assert (r.returncode, r.stdout) == (0, "fault set: pdf_broken in production\n")


def test_fault_cli_without_a_sandbox_says_how_to_start_one(tmp_path: Path) -> None:
    r = run_cli("sandbox", "fault", "list", env={"CONTROLPLANE_CACHE": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr == ("controlplane: no running sandbox found: start one with `controlplane "
                        "sandbox run` or `controlplane demo`, or pass --url\n")


def test_sandbox_run_starts_everything_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONTROLPLANE_CACHE": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "controlplane", "sandbox", "run"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        state = tmp_path / "sandbox" / "state.json"
        deadline = time.monotonic() + 60
        while not state.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "sandbox did not write its state file"
            time.sleep(0.1)
        time.sleep(0.2)
        r = run_cli("sandbox", "fault", "set", "sms_dropped",
                    env={"CONTROLPLANE_CACHE": str(tmp_path)})
        assert r.returncode == 0, r.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "sandbox: fault API     http://127.0.0.1:" in out
    assert out.endswith("sandbox: stopped\n")
    assert not state.exists()


@pytest.mark.parametrize(("fault", "extra", "step", "status", "message"), CLI_FAULTS,
                         ids=[f[0] for f in CLI_FAULTS])
def test_each_fault_set_with_the_cli_breaks_its_idcard_step(
        sandbox: Sandbox, fault: str, extra: list[str], step: str, status: Status,
        message: str) -> None:
    r = run_cli("sandbox", "fault", "set", fault, *extra, "--url", sandbox.url("control"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"fault set: {fault} in production")
    sla = {"request_link": 30, "receive_sms": 2 if step == "receive_sms" else 30,
           "check_link_host": 30, "open_link": 30, "check_appconfig": 30, "download_pdf": 30,
           "total": 60}
    result = IdCardSmsProbe(idcard_config(sandbox, sla=sla), sandbox_context()).execute()
    assert result.status == status, result.message
    assert [(s.name, s.status) for s in result.steps if s.status != Status.OK] == [(step, status)]
    assert result.message.startswith(f"{step}: {message}"), result.message


def test_sandbox_run_with_card_page_spa_serves_the_single_page_card(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONTROLPLANE_CACHE": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "controlplane", "sandbox", "run",
                             "--card-page", "spa"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        state = tmp_path / "sandbox" / "state.json"
        deadline = time.monotonic() + 60
        while not state.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "sandbox did not write its state file"
            time.sleep(0.1)
        time.sleep(0.2)
        info = json.loads(state.read_text())
        assert info["card_page"] == "spa"
        from controlplane.probes.sitefetch import Fetcher

        port = info["ports"]["bic_agent"]
        got = Fetcher(info["ca_file"], info["nameserver"], 20).request(
            "GET", f"https://bic-sky.halo360.ai:{port}/main.js")
        assert (got.status, got.content_type) == (200, "text/javascript")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
