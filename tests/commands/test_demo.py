"""`controlplane demo` end to end: every check kind, faults through the sandbox, Ctrl-C."""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from controlplane.k8s.testbed import SETUP_HINT, missing_binaries
from controlplane.probes.twilio_api import twilio_client
from controlplane.sandbox import kafka_jars
from controlplane.sandbox.datatier import rabbitmq_unavailable, s3_unavailable
from controlplane.sandbox.kafka_broker import kafka_unavailable
from controlplane.sandbox.localdata import azurite_binary, postgres_bindir
from tests.services.common import run_cli
from tests.services.sandbox import DemoProcess


def checks(url: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = requests.get(f"{url}/api/v1/checks", timeout=30).json()[
        "checks"]
    return rows


def run_check(demo: DemoProcess, check_id: str) -> dict[str, object]:
    """Run a check now through the API; retried while the scheduler's own run is in flight."""
    for _ in range(20):
        resp = requests.post(f"{demo.url}/api/v1/checks/{check_id}/run", timeout=90,
                             headers={"Authorization": f"Bearer {demo.admin_token}"})
        assert resp.status_code == 200, resp.text
        result: dict[str, object] = resp.json()
        if not str(result["message"]).startswith("previous run still running"):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{check_id} was busy for 10s")


def test_demo_watches_all_four_environments_with_every_local_kind(demo: DemoProcess) -> None:
    rows = checks(demo.url)
    # the vendors (two status pages and the OpenAI model list, on the contract fakes)
    kinds = {"idcard_sms", "config_drift", "http", "dns", "tls", "tcp", "vendor_status",
             "vendor_api"}
    backups = postgres_bindir() is not None or not missing_binaries()
    if backups:
        kinds |= {"backup", "drill", "dr"}
    if postgres_bindir() is not None:
        kinds.add("postgres")
    if kafka_unavailable() is None:
        kinds |= {"kafka_cluster", "kafka_lag", "kafka_canary"}
    if rabbitmq_unavailable() is None:
        kinds.add("rabbitmq")
    if s3_unavailable() is None:
        kinds.add("s3")
    # with backups (PostgreSQL or the cluster): the backups feature's four dr checks
    # (postgres, kafka, kubernetes-secrets, cluster-rebuild); per component backed up a
    # built-in backup and drill check; with PostgreSQL the postgres check; with the cluster
    # the workload and release checks
    if not missing_binaries():
        kinds |= {"k8s_workload", "release_drift"}
    assert len(rows) == 28 + (4 if backups else 0) + (3 if postgres_bindir() else 0) + (
        3 if kafka_unavailable() is None else 0) + (
        1 if rabbitmq_unavailable() is None else 0) + (1 if s3_unavailable() is None else 0) + (
        0 if missing_binaries() else 4)
    assert {r["env"] for r in rows} == {"production", "release", "staging", "dev", ""}
    assert {r["kind"] for r in rows} == kinds


def test_demo_cluster_shows_the_platforms_p4_posture_and_the_r121_image(
        demo: DemoProcess) -> None:
    if missing_binaries():
        pytest.fail(f"Kubernetes test-bed binaries missing: {SETUP_HINT}")
    workloads = run_check(demo, "k8s-workloads-production")
    release = run_check(demo, "release-production")

    assert workloads["status"] == "degraded", workloads["message"]
    message = str(workloads["message"])
    assert message.startswith("360voice-prod: 3/3 workloads ready; bic-agent: "
                              "missingPodDisruptionBudget, ")
    assert "; voice360: deploymentMissingReplicas, missingPodDisruptionBudget, " in message
    assert release["status"] == "failing"
    assert release["message"] == ("production runs bic-agent bic-agent:0.1.27-r121, a known "
                                  "bad image: ships staging URLs in appconfig.json")


def test_demo_checks_pass_on_a_healthy_platform(demo: DemoProcess) -> None:
    for check_id in ("idcard-sms-production", "config-drift-dev", "http-halo-task-staging",
                     "http-voice360-release", "dns-idcard-production", "tls-idcard-dev",
                     "tcp-twilio"):
        result = run_check(demo, check_id)
        assert result["status"] == "ok", (check_id, result["message"])


def test_fault_injected_with_the_cli_fails_the_drift_check(demo: DemoProcess) -> None:
    demo.wait_line("demo: control plane on ")
    r = run_cli("sandbox", "fault", "set", "appconfig_staging",
                env=demo.cli_env)
    assert r.returncode == 0, r.stderr
    result = run_check(demo, "config-drift-production")
    assert result["status"] == "failing"
    assert str(result["message"]).startswith("production appconfig.json points at staging: ")
    assert run_check(demo, "config-drift-staging")["status"] == "ok"


def test_certificate_expiring_in_5_days_fails_the_tls_check(demo: DemoProcess) -> None:
    demo.wait_line("demo: control plane on ")
    r = run_cli("sandbox", "fault", "set", "cert_expiring", "--env", "release",
                env=demo.cli_env)
    assert r.returncode == 0, r.stderr
    result = run_check(demo, "tls-idcard-release")
    # 5 days left is under the tls kind's default crit_days (7).
    assert result["status"] == "failing", result["message"]
    assert run_check(demo, "tls-idcard-production")["status"] == "ok"


def test_ctrl_c_stops_everything_the_demo_started(own_demo: DemoProcess) -> None:
    demo = own_demo
    url = demo.url
    state = json.loads((demo.cache / "sandbox" / "state.json").read_text())
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)[ ,]",
                                        demo.wait_line("demo: DR dashboard"))] \
        if postgres_bindir() else []
    started = started_processes(demo.proc.pid, ports)
    assert len(started) >= len(ports)  # PostgreSQL and Azurite found by their ports
    assert demo.stop() == 0
    assert demo.lines[-1] == "demo: stopped"
    deadline = time.monotonic() + 30
    while (alive := [p for p in started if Path(f"/proc/{p}").exists()
                     and proc_state(p) != "Z"]):  # the `ps` check: nothing it started lives on
        assert time.monotonic() < deadline, f"still running after Ctrl-C: {alive}"
        time.sleep(0.2)
    assert not (demo.cache / "sandbox" / "state.json").exists()
    for target in (url, state["control_url"]):
        with pytest.raises(requests.ConnectionError):
            requests.get(target, timeout=5)
    assert len(ports) == (2 if azurite_binary() else 1)
    for port in ports:  # PostgreSQL and, when installed, Azurite
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def started_processes(root: int, ports: list[int]) -> set[int]:
    """The demo's descendants plus the servers it daemonized (PostgreSQL, Azurite), by port."""
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(
                b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        parents[int(entry.name)] = int(fields[1])
    found = {pid for pid, cmd in cmdlines.items()
             if any(f"-p {port} " in cmd or f"--blobPort {port} " in cmd for port in ports)}
    found.add(root)
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    found.discard(root)
    return found


def test_timeline_opens_notifies_and_resolves_the_r121_drift_incident(tmp_path: Path) -> None:
    # Speed 5: the drift is live from t+12 s to t+60 s, long enough for config-drift-production
    # (every 15 s, failure_threshold 2) to fail twice, open and notify, then heal.
    proc = DemoProcess(tmp_path / "cache", "--speed", "5")
    try:
        proc.wait_line("demo: t+1:00 set appconfig_staging in production: ")
        opened = wait_incident(proc, "config-drift-production",
                               lambda i: bool(i["notified"]), timeout=120)
        assert opened["state"] == "open" and opened["resolved_at"] is None
        assert str(opened["message"]).startswith("production appconfig.json points at "
                                                 "staging: agentUrl=https://halovoice-staging")
        slack = proc.wait_line("demo: Slack (fake)").split()[3]
        # "notified" may name another channel (Jira) first: wait for the Slack post itself.
        deadline = time.monotonic() + 60
        while True:
            history = requests.get(f"{slack}/api/conversations.history?channel=C0ONCALL",
                                   headers={"Authorization": "Bearer xoxb-sandbox-token"},
                                   timeout=10).json()
            posted = any("config-drift-production" in json.dumps(m)
                         for m in history["messages"])
            if posted or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert posted, history["messages"]
        proc.wait_line("demo: timeline done", timeout=180)
        control = json.loads((tmp_path / "cache" / "sandbox" / "state.json").read_text())[
            "control_url"]
        assert requests.get(f"{control}/faults", timeout=10).json()["faults"] == []
        resolved = wait_incident(proc, "config-drift-production",
                                 lambda i: i["resolved_at"] is not None, timeout=120)
        assert resolved["id"] == opened["id"]
        assert_idcard_incident_moved_to_the_dropped_sms_and_resolved(proc, slack)
    finally:
        assert proc.stop() == 0
    assert [line.split(" in production")[0] for line in proc.lines
            if line.startswith("demo: t+")] == [
        "demo: t+1:00 set appconfig_staging", "demo: t+3:00 set sms_dropped",
        "demo: t+5:00 clear appconfig_staging", "demo: t+6:00 clear sms_dropped"]


def assert_idcard_incident_moved_to_the_dropped_sms_and_resolved(proc: DemoProcess,
                                                                 slack: str) -> None:
    """idcard-sms-production fails from the drift (t+12 s) until the SMS flows (t+72 s);
    every run starting after the drop (t+36 s) fails first at receive_sms, so the
    incident's last failing word is the dropped SMS, whatever failed first."""
    incident = wait_incident(proc, "idcard-sms-production",
                             lambda i: i["resolved_at"] is not None, timeout=120)
    detail = requests.get(f"{proc.url}/api/v1/incidents/{incident['id']}", timeout=10).json()
    events = detail["timeline"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "opened" and kinds.count("resolved") == 1, events
    before = events[:kinds.index("resolved")]  # notices of the resolution come after it
    assert "notified" in [e["kind"] for e in before], events
    failing = [e["message"] for e in before if e["kind"] in ("opened", "escalated", "updated")]
    # Drift first (check_appconfig), if a run caught it before the drop; then the dropped SMS.
    steps = [re.sub(r"^\w+ -> \w+: ", "", m).split(":")[0] for m in failing]
    assert steps == sorted(steps) and set(steps) <= {"check_appconfig", "receive_sms"}, failing
    assert failing[-1].endswith("receive_sms: no SMS delivered to +15550100001 within 15s "
                                "(1 message(s) seen, status sent)"), failing
    assert detail["notified"] is True
    history = requests.get(f"{slack}/api/conversations.history?channel=C0ONCALL",
                           headers={"Authorization": "Bearer xoxb-sandbox-token"},
                           timeout=10).json()
    assert any("idcard-sms-production" in json.dumps(m) for m in history["messages"])


def test_demo_on_a_busy_port_says_so_and_cleans_up(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli("demo", "--port", str(port), "--no-timeline",
                    env={"CONTROLPLANE_CACHE": str(tmp_path)})
    assert r.returncode == 2
    assert (f"controlplane: cannot serve on 127.0.0.1:{port}: Address already in use; pass "
            "another --port") in r.stderr
    assert not (tmp_path / "sandbox" / "state.json").exists()


def test_halo_task_500_fails_the_http_health_check(demo: DemoProcess) -> None:
    demo.wait_line("demo: control plane on ")
    r = run_cli("sandbox", "fault", "set", "halo_task_500", "--env", "staging",
                env=demo.cli_env)
    assert r.returncode == 0, r.stderr
    assert run_check(demo, "http-halo-task-staging")["status"] == "failing"
    assert run_check(demo, "http-halo-task-production")["status"] == "ok"


def test_dns_answering_the_wrong_ip_fails_the_dns_check(demo: DemoProcess) -> None:
    demo.wait_line("demo: control plane on ")
    r = run_cli("sandbox", "fault", "set", "dns_wrong_ip", "--env", "dev",
                env=demo.cli_env)
    assert r.returncode == 0, r.stderr
    result = run_check(demo, "dns-idcard-dev")
    assert result["status"] == "failing"
    assert "127.0.0.2" in str(result["message"])


def test_incident_opens_notifies_slack_and_jira_and_resolves(demo: DemoProcess) -> None:
    slack = demo.wait_line("demo: Slack (fake)").split()[3]
    jira = demo.wait_line("demo: Jira (fake)").split()[3]
    r = run_cli("sandbox", "fault", "set", "pdf_broken", "--env", "staging",
                env=demo.cli_env)
    assert r.returncode == 0, r.stderr
    for _ in range(2):  # failure_threshold 2
        result = run_check(demo, "idcard-sms-staging")
        assert result["status"] == "failing", result["message"]
    incident = wait_incident(demo, "idcard-sms-staging", lambda i: bool(i["notified"]))
    assert incident["state"] == "open"
    assert str(incident["message"]).startswith("download_pdf: the PDF (73 bytes) cannot be "
                                               "opened")

    def slack_has_it() -> bool:
        history = requests.get(f"{slack}/api/conversations.history?channel=C0ONCALL",
                               headers={"Authorization": "Bearer xoxb-sandbox-token"},
                               timeout=10).json()
        return any("idcard-sms-staging" in json.dumps(m) for m in history["messages"])

    def jira_has_it() -> bool:
        issues = requests.get(f"{jira}/rest/api/2/search?jql=project=OPS", timeout=10,
                              auth=("controlplane@example.com", "jira-sandbox-token")).json()
        return any("idcard-sms-staging" in json.dumps(i) for i in issues["issues"])

    eventually(slack_has_it)  # each channel has its own outbox worker
    eventually(jira_has_it)
    run_cli("sandbox", "fault", "clear", "--all", env=demo.cli_env)
    assert run_check(demo, "idcard-sms-staging")["status"] == "ok"
    wait_incident(demo, "idcard-sms-staging", lambda i: i["resolved_at"] is not None)


def wait_incident(demo: DemoProcess, check_id: str, ready: Callable[[dict[str, Any]], bool],
                  timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = requests.get(f"{demo.url}/api/v1/incidents", timeout=10).json()["incidents"]
        mine = [i for i in rows if i["check"] == check_id]
        if mine and ready(mine[0]):
            return dict(mine[0])
        time.sleep(0.5)
    raise AssertionError(f"no incident for {check_id} reached the wanted state in {timeout}s")


def eventually(cond: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{cond.__name__} still false after {timeout}s"
        time.sleep(0.5)


def test_secrets_never_reach_pages_api_or_output(demo: DemoProcess) -> None:
    state = json.loads((demo.cache / "sandbox" / "state.json").read_text())
    assert run_check(demo, "idcard-sms-production")["status"] == "ok"
    r = run_cli("sandbox", "fault", "set", "wrong_link_host", env=demo.cli_env)
    assert r.returncode == 0, r.stderr
    failed = run_check(demo, "idcard-sms-production")  # its message quotes the (redacted) link
    assert str(failed["message"]).startswith("check_link_host: link host links.halo360.ai ")
    twilio = twilio_client(state["twilio_account_sid"], state["twilio_auth_token"],
                           state["twilio_api_base"], state["ca_file"])
    bodies = [m.body or "" for m in twilio.messages.list(to="+15550100001")]
    links = [t for b in bodies for t in re.findall(r"/idcard/([A-Za-z0-9_-]{9,})", b)]
    assert len(links) >= 2
    secrets = [state["twilio_auth_token"], state["halo_task_token"], *links]
    seen = {path: requests.get(f"{demo.url}{path}", timeout=30).text for path in (
        "/", "/incidents", "/checks/idcard-sms-production", "/api/v1/checks",
        "/api/v1/checks/idcard-sms-production/results", "/api/v1/incidents", "/metrics")}
    seen["demo output"] = "\n".join(demo.lines)
    assert "links.halo360.ai" in seen["/api/v1/checks/idcard-sms-production/results"]
    assert [(where, s[:4]) for where, text in seen.items() for s in secrets if s in text] == []


@pytest.mark.skipif(postgres_bindir() is None, reason="needs Debian postgresql (setup.d)")
def test_demo_backs_up_and_drills_its_database_at_once(demo: DemoProcess) -> None:
    demo.wait_line("demo: first backup and restore drill done", timeout=180)
    dr = requests.get(f"{demo.url}/api/v1/dr", timeout=10).json()
    postgres = next(c for c in dr["components"] if c["component"] == "postgres")
    assert [b["status"] for b in postgres["backups"]][:1] == ["complete"]
    assert postgres["drills"] and postgres["drills"][0]["failed_step"] == ""
    for check_id in ("backup-postgres", "drill-postgres"):
        assert run_check(demo, check_id)["status"] == "ok"
    line = demo.wait_line("demo: DR dashboard")
    assert ("to Azurite on 127.0.0.1:" in line) == (azurite_binary() is not None)


def test_demo_backs_up_and_drills_the_clusters_secrets_so_dr_shows_measures(
        demo: DemoProcess) -> None:
    if missing_binaries():
        pytest.fail(f"Kubernetes test-bed binaries missing: {SETUP_HINT}")
    demo.wait_line("demo: first Secrets backup and drill done (kubernetes-secrets); see the DR "
                   "dashboard", timeout=180)
    dr = requests.get(f"{demo.url}/api/v1/dr", timeout=10).json()
    comp = next(c for c in dr["components"] if c["component"] == "kubernetes-secrets")
    page = requests.get(f"{demo.url}/dr", timeout=10).text
    row = re.search(r'<tr id="dr-kubernetes-secrets">(.*?)</tr>', page, re.S)

    assert [b["status"] for b in comp["backups"]][:1] == ["complete"]
    drill = comp["drills"][0]
    assert (drill["status"], drill["failed_step"]) == ("passed", "")
    created = next(st for st in drill["steps"] if st["name"] == "create-namespace")
    assert re.fullmatch(r"controlplane-drill-[0-9a-f]{8}", created["message"])
    assert comp["rto_s"] == drill["duration_s"] and comp["rto_s"] > 0
    assert comp["rpo_s"] is not None and comp["rpo_s"] > 0
    assert comp["status"] != "unknown"
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row[1], re.S)
    assert re.fullmatch(r"\d+s", cells[2]), cells  # measured RTO
    assert re.fullmatch(r"\d+(s|m)", cells[4].split("<")[0]), cells  # current RPO
    assert "Unknown" not in row[1]
    for check_id in ("backup-kubernetes-secrets", "drill-kubernetes-secrets"):
        assert run_check(demo, check_id)["status"] == "ok"
    line = demo.wait_line("demo: Secrets backup")
    assert line.endswith("drill every 4 min into a scratch namespace controlplane-drill-<id> "
                         "(see /dr)")


@pytest.mark.skipif(postgres_bindir() is None, reason="needs Debian postgresql (setup.d)")
def test_without_azurite_backups_go_to_a_local_folder(tmp_path: Path) -> None:
    # An empty cache but for Maven's local repository (so fetching the jars reads no
    # network): the demo has no Azurite, no cluster binaries and no Kafka jars yet.
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    (empty / "m2").symlink_to(kafka_jars.cache_dir() / "m2")
    proc = DemoProcess(tmp_path / "cache", "--no-timeline",
                       env={"CONTROLPLANE_CACHE": str(empty)})
    try:
        line = proc.wait_line("demo: DR dashboard")
        assert "to the local folder /" in line and line.endswith("/blobs, restore drill every "
                                                                 "4 min)")
        proc.wait_line("demo: first backup and restore drill done", timeout=180)
        assert ("demo: no Kubernetes test-bed binaries (run scripts/setup.d/50-kubernetes.sh); "
                "the cluster checks are left out") in proc.lines
        # The empty cache has no Kafka jars either: with java and Maven the demo fetches
        # them itself, with the same resolution as setup, into that cache.
        if shutil.which("java") and shutil.which("mvn"):
            assert any(line.startswith("demo: fetching the Kafka ") and
                       f"jars from Maven Central into {empty}/kafka/" in line
                       for line in proc.lines)
            assert list((empty / "kafka").glob("*/libs/kafka_2.13-*.jar"))
    finally:
        assert proc.stop() == 0


@pytest.mark.skipif(postgres_bindir() is None, reason="needs Debian postgresql (setup.d)")
def test_sigkill_of_the_demo_leaves_no_server_running(tmp_path: Path) -> None:
    demo = DemoProcess(tmp_path / "cache", "--no-timeline")
    try:
        ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)[ ,]",
                                            demo.wait_line("demo: DR dashboard"))]
        started = started_processes(demo.proc.pid, ports)
        assert len(ports) == (2 if azurite_binary() else 1)
        assert len(started) >= len(ports)
    finally:
        demo.proc.kill()  # SIGKILL: no handler, no grace period, no clean-up code runs
        demo.proc.wait(30)
    deadline = time.monotonic() + 30
    while (alive := [p for p in started if Path(f"/proc/{p}").exists()
                     and proc_state(p) != "Z"]):
        assert time.monotonic() < deadline, f"orphans still running after SIGKILL: {alive}"
        time.sleep(0.2)
    for port in ports:  # PostgreSQL and, when installed, Azurite
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
