"""The Helm chart (chart/controlplane), checked by Helm itself: `helm lint` and `helm template`
for the default values and three other value sets, the schema refusing bad values with a
message naming them, and what the rendered objects promise (HA, posture, least privilege,
no Secret values, the config that `controlplane validate` accepts)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services.common import run_cli
from tests.ship.tools import ROOT, tool

CHART = ROOT / "chart" / "controlplane"
VALUES = ROOT / "tests" / "ship" / "values"
VALUE_SETS = [None, "production.yaml", "minimal.yaml", "custom.yaml"]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache",
           "HELM_CONFIG_HOME": "/tmp/helm-config", "HELM_DATA_HOME": "/tmp/helm-data"}
    return subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120,
                          env=env)


def values_args(name: str | None) -> list[str]:
    return ["--values", str(VALUES / name)] if name else []


def render(name: str | None, *extra: str) -> list[dict[str, Any]]:
    proc = helm("template", "cp", str(CHART), "--namespace", "observability",
                *values_args(name), *extra)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_passes(value_set: str | None) -> None:
    proc = helm("lint", "--strict", str(CHART), *values_args(value_set))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_deployment_is_hardened_and_probed(value_set: str | None) -> None:
    kinds = by_kind(render(value_set))
    assert "Secret" not in kinds  # secrets are referenced, never created
    (dep,) = kinds["Deployment"]
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == (1 if value_set == "minimal.yaml" else 2)
    assert spec["securityContext"]["runAsNonRoot"] is True
    (c,) = spec["containers"]
    assert c["args"] == ["run", "--config", "/etc/controlplane/controlplane.yaml"]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/etc/controlplane", "/tmp"}
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert [t["podAffinityTerm"]["topologyKey"] for t in anti] == [
        "topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    refs = [e["secretRef"]["name"] for e in c["envFrom"]]
    assert refs == (["cp-env", "cp-slack", "cp-jira"] if value_set == "custom.yaml"
                    else ["controlplane-secrets"])
    if value_set == "custom.yaml":
        assert spread["whenUnsatisfiable"] == "DoNotSchedule"
        assert {"name": "TZ", "value": "UTC"} in c["env"]


RBAC_FILE = ROOT / "deploy" / "rbac" / "controlplane-rbac.yaml"


def rbac_file_role(name: str) -> dict[str, Any]:
    """A role of deploy/rbac, the rules the Kubernetes tests run the product under."""
    docs = [d for d in yaml.safe_load_all(RBAC_FILE.read_text()) if d]
    return next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name)


def rule_set(role: dict[str, Any]) -> set[tuple[tuple[str, ...], ...]]:
    return {(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"]))
            for r in role["rules"]}


def test_default_values_give_two_replicas_a_pdb_and_least_privilege_rbac() -> None:
    kinds = by_kind(render(None))
    assert sorted(kinds) == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment",
                             "PodDisruptionBudget", "Role", "RoleBinding", "Service",
                             "ServiceAccount"]
    assert kinds["PodDisruptionBudget"][0]["spec"]["minAvailable"] == 1
    (cluster_role,) = kinds["ClusterRole"]
    assert rule_set(cluster_role) == rule_set(rbac_file_role("controlplane-workloads-read"))
    (role,) = kinds["Role"]
    assert role["metadata"]["namespace"] == "360voice-prod"
    assert rule_set(role) == rule_set(rbac_file_role("controlplane-secrets-read"))
    (binding,) = kinds["RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cp-controlplane",
                                    "namespace": "observability"}]
    # Runbooks get no rights to scale, restart or rebuild unless the values ask for them.
    assert [r["metadata"]["name"] for r in kinds["ClusterRole"]] == ["cp-controlplane-read"]
    assert [b["metadata"]["name"] for b in kinds["ClusterRoleBinding"]] == [
        "cp-controlplane-read"]


def test_operate_namespaces_bind_the_runbooks_operate_rules_there_only() -> None:
    kinds = by_kind(render("production.yaml"))
    (operate,) = [r for r in kinds["ClusterRole"]
                  if r["metadata"]["name"] == "cp-controlplane-runbooks-operate"]
    assert rule_set(operate) == rule_set(rbac_file_role("controlplane-runbooks-operate"))
    bindings = {b["metadata"]["namespace"]: b for b in kinds["RoleBinding"]
                if b["roleRef"]["name"] == "cp-controlplane-runbooks-operate"}
    assert sorted(bindings) == ["360voice-prod", "360voice-staging"]
    for b in bindings.values():
        assert b["roleRef"]["kind"] == "ClusterRole"  # a RoleBinding: that namespace only
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "cp-controlplane",
                                  "namespace": "observability"}]
    assert "cp-controlplane-rebuild" not in {r["metadata"]["name"] for r in kinds["ClusterRole"]}


def test_rebuild_enabled_binds_the_rebuild_rules_cluster_wide() -> None:
    kinds = by_kind(render("custom.yaml"))
    roles = {r["metadata"]["name"]: r for r in kinds["ClusterRole"]}
    assert sorted(roles) == ["cp-read", "cp-rebuild"]
    assert rule_set(roles["cp-rebuild"]) == rule_set(rbac_file_role("controlplane-rebuild"))
    (binding,) = [b for b in kinds["ClusterRoleBinding"]
                  if b["metadata"]["name"] == "cp-rebuild"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": "cp-rebuild"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cp",
                                    "namespace": "observability"}]


@pytest.mark.parametrize(("flag", "message"), [
    ("rbac.rebuild.enabled=yes", "at '/rbac/rebuild/enabled': got string, want boolean"),
    ("rbac.operateNamespaces={Prod_NS}", "at '/rbac/operateNamespaces/0'"),
])
def test_bad_runbook_rbac_values_fail_with_a_message_naming_them(flag: str,
                                                                  message: str) -> None:
    proc = helm("template", "cp", str(CHART), "--set-string" if "yes" in flag else "--set",
                flag)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr


def test_production_values_add_ingress_monitoring_and_restore_rights() -> None:
    kinds = by_kind(render("production.yaml"))
    (ing,) = kinds["Ingress"]
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ing["spec"]["tls"] == [{"hosts": ["controlplane.techhalo.ai"],
                                   "secretName": "cp-controlplane-tls"}]
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    restore = rule_set(rbac_file_role("controlplane-secrets-restore"))
    assert {frozenset(rule_set(r)) for r in kinds["Role"]
            if r["metadata"]["name"].endswith("-restore")} == {frozenset(restore)}
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r["rules"][0]["verbs"]
             for r in kinds["Role"]}
    assert roles == {("360voice-prod", "cp-controlplane-secrets-read"): ["get", "list"],
                     ("kafka", "cp-controlplane-secrets-read"): ["get", "list"],
                     ("360voice-restore", "cp-controlplane-secrets-restore"):
                         ["get", "list", "create", "update", "delete"]}
    (dep,) = kinds["Deployment"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "techhalo.azurecr.io/360voice/controlplane:0.1.0")


def test_prometheus_rule_carries_every_alert_with_the_runbook_base_replaced() -> None:
    (rule,) = by_kind(render("production.yaml"))["PrometheusRule"]
    files = sorted((ROOT / "dashboards" / "alerts").glob("*.yaml"))
    expected = [g for f in files for g in yaml.safe_load(f.read_text())["groups"]]
    got = rule["spec"]["groups"]
    assert [g["name"] for g in got] == [g["name"] for g in expected]
    for g_got, g_exp in zip(got, expected, strict=True):
        for r_got, r_exp in zip(g_got["rules"], g_exp["rules"], strict=True):
            url = r_exp["annotations"]["runbook_url"].replace(
                "https://github.com/techhalo/controlplane/blob/main/docs/alerts.md",
                "https://docs.techhalo.ai/controlplane/alerts")
            assert r_got == {**r_exp, "annotations": {**r_exp["annotations"],
                                                      "runbook_url": url}}


def test_minimal_values_leave_out_pdb_rbac_and_service_account() -> None:
    kinds = by_kind(render("minimal.yaml"))
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Service"]
    spec = kinds["Deployment"][0]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "controlplane-existing"


def test_config_map_holds_a_config_that_validates(tmp_path: Path) -> None:
    (cm,) = by_kind(render(None))["ConfigMap"]
    dep = by_kind(render(None))["Deployment"][0]
    items = next(v for v in dep["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == "config")["configMap"]["items"]
    for item in items:  # lay the files out as the volume mounts them
        path = tmp_path / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cm["data"][item["key"]])
    shipped = sorted(p.name for p in (ROOT / "checks").glob("*.yaml"))
    assert sorted(p.name for p in (tmp_path / "checks").glob("*.yaml")) == shipped
    for name in shipped:
        assert (tmp_path / "checks" / name).read_text() == (ROOT / "checks" / name).read_text()
    runbooks = sorted(p.name for p in (ROOT / "runbooks").glob("*.yaml"))
    assert runbooks and sorted(p.name for p in (tmp_path / "runbooks").glob("*.yaml")) == runbooks
    # The manifests runbooks apply (paths relative to the main config), e.g. cluster-rebuild's
    # deploy/platform/deployments.yaml, are there as in the repository.
    applied = {f for p in (ROOT / "runbooks").glob("*.yaml")
               for step in yaml.safe_load(p.read_text()).get("steps", [])
               if step.get("action") == "k8s.apply" for f in step["args"].get("files", [])}
    assert "deploy/platform/deployments.yaml" in applied
    platform = sorted(p.name for p in (ROOT / "deploy" / "platform").glob("*.yaml"))
    assert sorted(p.name for p in (tmp_path / "deploy" / "platform").glob("*.yaml")) == platform
    for f in applied:
        assert (tmp_path / f).read_text() == (ROOT / f).read_text()
    proc = run_cli("validate", "--config", str(tmp_path / "controlplane.yaml"),
                   env={"CONTROLPLANE_STORE_DSN": "postgresql://cp@db/cp",
                        "CONTROLPLANE_ADMIN_TOKEN": "t"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{tmp_path / 'controlplane.yaml'}: valid (")


@pytest.mark.parametrize(("flag", "message"), [
    ("replicaCount=0", "at '/replicaCount': minimum: got 0, want 1"),
    ("image.tag=latest", "at '/image/tag': 'not' failed"),
    ("ingress.enabled=true", "at '/ingress/host': minLength: got 0, want 1"),
    ("secrets.existingSecret=", "at '/secrets/existingSecret': minLength: got 0, want 1"),
    ("env.SLACK_TOKEN=xoxb-1", "invalid propertyName 'SLACK_TOKEN'"),
    ("topologySpread.whenUnsatisfiable=Sometimes", "at '/topologySpread/whenUnsatisfiable'"),
])
def test_bad_values_fail_with_a_message_naming_them(flag: str, message: str) -> None:
    proc = helm("template", "cp", str(CHART), "--set", flag)
    assert proc.returncode == 1
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


SCHEMAS = Path(os.environ.get("CONTROLPLANE_CACHE", Path.home() / ".cache" / "controlplane")
               ) / "k8s-schemas" / "v1.34.0"


def kubeconform(manifests: str) -> subprocess.CompletedProcess[str]:
    """kubeconform -strict offline, with the Kubernetes 1.34 schemas of the kubernetes-validate
    wheel (scripts/setup.d/60-ship.sh); the Prometheus Operator's kinds have no schema there."""
    if not (SCHEMAS / "deployment-apps-v1.json").is_file():
        pytest.fail("no Kubernetes schemas: run scripts/setup.d/60-ship.sh")
    return subprocess.run(
        [tool("kubeconform"), "-strict", "-summary", "-skip", "ServiceMonitor,PrometheusRule",
         "-schema-location", f"{SCHEMAS}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json", "-"],
        input=manifests, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_kubeconform_accepts_every_rendered_object(value_set: str | None) -> None:
    rendered = helm("template", "cp", str(CHART), *values_args(value_set)).stdout
    count = len([d for d in yaml.safe_load_all(rendered) if d])
    crds = 2 if value_set == "production.yaml" else 0
    proc = kubeconform(rendered)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Valid: {count - crds}, Invalid: 0, Errors: 0, Skipped: {crds}" in proc.stdout


def test_kubeconform_rejects_a_misspelled_field() -> None:
    rendered = helm("template", "cp", str(CHART)).stdout.replace("  replicas: 2", "  replica: 2")
    proc = kubeconform(rendered)
    assert proc.returncode == 1
    assert "Deployment cp-controlplane is invalid" in proc.stdout
    assert "'replica'" in proc.stdout
