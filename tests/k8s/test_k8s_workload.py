"""k8s_workload on the test-bed cluster: real scheduling across three kwok zones."""

from __future__ import annotations

import datetime as dt
import os
import signal
from typing import Any

import pytest
from pydantic import ValidationError

from controlplane.k8s.client import ClusterConnection
from controlplane.k8s.testbed import KubeCluster
from controlplane.probes.k8s_workload import K8sWorkloadConfig, K8sWorkloadProbe
from controlplane.results import Result, Status
from tests.k8s.objects import Admin, container, deployment, hpa, pdb, wait_for
from tests.services.common import free_port
from tests.services.kube import new_namespace, product_connection

pytestmark = pytest.mark.kube


def run(conn: ClusterConnection, **fields: Any) -> Result:
    cfg = K8sWorkloadConfig(id="k8s-test", cluster=conn, timeout=10, **fields)
    return K8sWorkloadProbe(cfg).execute()


def ids(result: Result, name: str) -> list[str]:
    row = next(r for r in result.details["workloads"] if r["name"] == name)
    return [f["id"] for f in row["findings"]]


@pytest.fixture
def ns(kube_workers: KubeCluster) -> str:
    return new_namespace(kube_workers)


@pytest.fixture
def admin(kube_workers: KubeCluster) -> Admin:
    return Admin(kube_workers)


def hardened(name: str, spread: str) -> list[dict[str, Any]]:
    return [deployment(name, [container("web", f"acr.example/{name}:1.0.0-r7")], replicas=3,
                       spread=spread),
            pdb(name, name, maxUnavailable=1), hpa(name, name, 3, 6)]


@pytest.mark.parametrize("spread", ["topology", "anti-affinity"])
def test_spread_deployment_runs_in_three_zones_with_no_findings(
        kube_workers: KubeCluster, ns: str, admin: Admin, spread: str) -> None:
    admin.apply(ns, *hardened("api", spread))
    admin.wait_ready(ns, "api", 3)
    assert admin.zones(ns, "api") == ["1", "2", "3"]

    result = run(product_connection(kube_workers), namespace=ns)

    assert result.status == Status.OK, result.message
    assert result.message == f"{ns}: 1/1 workloads ready, no posture findings"
    (row,) = result.details["workloads"]
    assert (row["desired"], row["ready"], row["zones"], row["findings"]) == \
        (3, 3, {"1": 1, "2": 1, "3": 1}, [])
    assert row["images"] == [{"container": "web", "image": "acr.example/api:1.0.0-r7",
                              "repository": "acr.example/api", "tag": "1.0.0-r7",
                              "digest": None}]


def test_deployment_without_spread_pinned_to_one_zone_lands_there(
        kube_workers: KubeCluster, ns: str, admin: Admin) -> None:
    # The platform's node pool lives in one zone: a node selector stands for it here.
    admin.apply(ns, deployment("web", [container("web", "acr.example/web:2.0.0-r3")],
                               replicas=2, node_zone="2"),
                pdb("web", "web", maxUnavailable=1), hpa("web", "web", 2, 4))
    admin.wait_ready(ns, "web", 2)

    result = run(product_connection(kube_workers), namespace=ns)

    assert result.status == Status.DEGRADED
    assert ids(result, "web") == ["topologySpreadConstraint", "podsInSingleZone"]
    single = result.details["findings"][1]
    assert single == {
        "id": "podsInSingleZone", "resource": f"Deployment/{ns}/web",
        "detail": "all 2 running pods in zone 2", "severity": "degraded",
        "why": "every running replica is in one availability zone: a zone outage takes the "
               "service down",
        "fix": "spread the pods across zones (topology spread or anti-affinity) and run the "
               "node pool in zones 1, 2 and 3"}
    assert result.message == (f"{ns}: 1/1 workloads ready; web: topologySpreadConstraint, "
                              "podsInSingleZone")


def test_seed_shaped_voice360_has_every_p4_finding_and_fails_where_configured(
        kube_workers: KubeCluster, ns: str, admin: Admin) -> None:
    admin.apply(ns, deployment("voice360", [container(
        "voice360", "360voiceprod.azurecr.io/voice360:latest", readiness=None, resources=False,
        env_secret="voice360-env")]))
    admin.wait_ready(ns, "voice360", 1)
    conn = product_connection(kube_workers)

    degraded = run(conn, namespace=ns)
    failing = run(conn, namespace=ns, failing_findings=["deploymentMissingReplicas"],
                  ignore_findings=["cpuLimitsMissing", "memoryLimitsMissing"])

    assert degraded.status == Status.DEGRADED
    assert ids(degraded, "voice360") == [
        "deploymentMissingReplicas", "missingPodDisruptionBudget", "topologySpreadConstraint",
        "missingHorizontalPodAutoscaler", "readinessProbeMissing", "cpuRequestsMissing",
        "memoryRequestsMissing", "cpuLimitsMissing", "memoryLimitsMissing", "tagNotSpecified",
        "envFromPlainSecret"]
    assert degraded.metrics["findings"] == 11
    assert failing.status == Status.FAILING
    assert failing.message.startswith(f"{ns}: 1/1 workloads ready; voice360: "
                                      "deploymentMissingReplicas; voice360: "
                                      "missingPodDisruptionBudget, ")
    assert "cpuLimitsMissing" not in ids(failing, "voice360")
    env = next(f for f in failing.details["findings"] if f["id"] == "envFromPlainSecret")
    assert (env["detail"], env["container"]) == ("environment from Secret voice360-env",
                                                 "voice360")


def test_zero_disruption_budget_and_fixed_autoscaler_are_findings(
        kube_workers: KubeCluster, ns: str, admin: Admin) -> None:
    admin.apply(ns, deployment("api", [container("api", "acr.example/api:1.0.0-r1")],
                               replicas=2, spread="topology"),
                pdb("api", "api", maxUnavailable=0), hpa("api", "api", 2, 2))
    admin.wait_ready(ns, "api", 2)

    result = run(product_connection(kube_workers), namespace=ns)

    details = {f["id"]: f["detail"] for f in result.details["findings"]}
    assert details == {"pdbDisruptionsIsZero": "api: maxUnavailable 0 with 2 replica(s)",
                       "hpaMaxAvailability": "api: minReplicas 2 = maxReplicas 2"}


def test_stuck_rollout_fails_with_its_reason(
        kube_workers: KubeCluster, ns: str, admin: Admin) -> None:
    # No node is in zone 9: the pod stays Pending until the progress deadline passes.
    admin.apply(ns, deployment("stuck", [container("s", "acr.example/s:1.0.0-r1")],
                               node_zone="9", progress_deadline=1))

    def stuck() -> bool:
        d = admin.apps.read_namespaced_deployment("stuck", ns)
        return any(c.type == "Progressing" and c.status == "False"
                   for c in d.status.conditions or [])
    wait_for(stuck, 60, "Progressing=False")

    result = run(product_connection(kube_workers), namespace=ns)

    assert result.status == Status.FAILING
    assert result.message.startswith(f"{ns}: 0/1 workloads ready; stuck rollout stuck "
                                     "(ProgressDeadlineExceeded); stuck 0/1 ready; ")


def test_recent_restarts_are_counted_between_runs(
        kube_workers: KubeCluster, ns: str, admin: Admin) -> None:
    admin.apply(ns, *hardened("api", "topology"))
    admin.wait_ready(ns, "api", 3)
    probe = K8sWorkloadProbe(K8sWorkloadConfig(
        id="k8s-restarts", cluster=product_connection(kube_workers), namespace=ns,
        restart_threshold=3))
    first = probe.execute()
    pod = admin.pods(ns, "api")[0]
    ended = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cs = pod.status.container_statuses[0]
    # What a kubelet writes after three crashes of the container.
    admin.core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
        "containerStatuses": [{
            "name": cs.name, "image": cs.image, "imageID": cs.image_id or "", "ready": True,
            "restartCount": 3, "started": True,
            "state": {"running": {"startedAt": ended}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                         "finishedAt": ended, "startedAt": ended}}}]}})
    second = probe.execute()

    assert (first.metrics["restarts"], second.metrics["restarts"]) == (0, 3)
    assert second.status == Status.DEGRADED
    assert second.message == f"{ns}: 1/1 workloads ready; api restarted 3 times recently"


def test_missing_permission_names_verb_and_resource(kube_workers: KubeCluster, ns: str) -> None:
    result = run(product_connection(kube_workers, user="outsider"), namespace=ns)

    assert result.status == Status.ERROR
    assert result.message == (f"403 Forbidden: the control plane may not list apps/deployments "
                              f"in namespace {ns}; grant it in "
                              "deploy/rbac/controlplane-rbac.yaml")


def test_api_server_down_is_an_error_naming_it(tmp_path: Any) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken-value")
    port = free_port()
    conn = ClusterConnection(api_server=f"https://127.0.0.1:{port}", token_file=str(token))

    result = run(conn, namespace="360voice-prod")

    assert result.status == Status.ERROR
    assert result.message.startswith(f"cannot reach the Kubernetes API at https://127.0.0.1:"
                                     f"{port} to list deployments in namespace 360voice-prod: ")
    assert "Connection refused" in result.message
    assert "t0ken-value" not in result.model_dump_json()


def test_hung_api_server_times_out(kube_workers: KubeCluster, ns: str) -> None:
    apiserver = kube_workers.proc("kube-apiserver").popen
    conn = product_connection(kube_workers)
    os.kill(apiserver.pid, signal.SIGSTOP)
    try:
        result = K8sWorkloadProbe(K8sWorkloadConfig(
            id="k8s-hung", cluster=conn, namespace=ns, timeout=1)).execute()
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)
    kube_workers.wait_ready()

    assert result.status == Status.ERROR
    assert result.message == (f"the Kubernetes API at {kube_workers.server} did not answer in "
                              f"time while trying to list deployments in namespace {ns} "
                              "(timed out); is the API server overloaded or hung?")
    assert result.duration_s < 5


def test_config_needs_a_namespace_or_a_selector() -> None:
    conn = {"kubeconfig": "/etc/kube/config"}
    with pytest.raises(ValidationError) as exc:
        K8sWorkloadConfig.model_validate({"id": "x", "kind": "k8s_workload", "cluster": conn})
    assert "you must specify namespace or label_selector" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        K8sWorkloadConfig.model_validate({"id": "x", "kind": "k8s_workload", "cluster": conn,
                                          "namespace": "a", "failing_findings": ["nope"]})
    assert "unknown finding id(s) nope; valid: deploymentMissingReplicas, " in str(exc.value)


def test_cluster_block_needs_exactly_one_way_in() -> None:
    with pytest.raises(ValidationError) as exc:
        ClusterConnection.model_validate({"kubeconfig": "/k", "in_cluster": True})
    assert ("you must specify exactly one of kubeconfig, in_cluster: true, or api_server "
            "(with token_file); got kubeconfig, in_cluster") in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        ClusterConnection.model_validate({"api_server": "https://k:6443"})
    assert "api_server needs token_file" in str(exc.value)
