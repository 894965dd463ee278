"""release_drift and the manifest commands against Deployments and Helm release Secrets on
the test-bed cluster, with manifests recorded in a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controlplane.k8s.testbed import KubeCluster
from controlplane.probes.base import ProbeContext, Services
from controlplane.probes.release_drift import ReleaseDriftConfig, ReleaseDriftProbe
from controlplane.results import Result, Status
from controlplane.store import Store
from tests.k8s.objects import Admin, container, deployment, secret
from tests.services.common import run_cli
from tests.services.kube import grant, new_namespace, product_connection

pytestmark = pytest.mark.kube

ACR = "360voiceprod.azurecr.io"
HELM = {"voice360": "voice360-prod", "bic-agent": "bic-agent-taskmanager-voice360-prod",
        "halo-task-manager-api": "halo-task-manager-api-prod"}


def digest(n: int) -> str:
    return "sha256:" + f"{n:02x}" * 32


class Env:
    """One environment: a namespace with the three Deployments and Helm release Secrets."""

    def __init__(self, cluster: KubeCluster, name: str) -> None:
        self.cluster, self.name = cluster, name
        self.ns = new_namespace(cluster, name)
        grant(cluster, self.ns, "controlplane-secrets-read")  # Helm release records
        self.admin = Admin(cluster)

    def deploy(self, images: dict[str, str], revisions: dict[str, int] | None = None) -> None:
        for svc, image in images.items():
            self.admin.apply(self.ns, deployment(svc, [container(svc, image)]))
        for svc, rev in (revisions or {}).items():
            self.helm(HELM[svc], rev)

    def set_image(self, svc: str, image: str) -> None:
        self.admin.apps.patch_namespaced_deployment(svc, self.ns, {"spec": {"template": {
            "spec": {"containers": [{"name": svc, "image": image}]}}}})

    def helm(self, release: str, rev: int, status: str = "deployed") -> None:
        labels = {"owner": "helm", "name": release, "version": str(rev), "status": status}
        self.admin.apply(self.ns, secret(f"sh.helm.release.v1.{release}.v{rev}",
                                         {"release": "H4sIAAAA-not-decoded"},
                                         type="helm.sh/release.v1", labels=labels))

    def check(self, store: Store, **fields: Any) -> Result:
        cfg = ReleaseDriftConfig(id=f"release-{self.name}", env=self.name,
                                 cluster=product_connection(self.cluster), namespace=self.ns,
                                 **fields)
        return ReleaseDriftProbe(cfg, ProbeContext(services=Services(store=store))).execute()


def trio(voice: str, bic: str, halo: str) -> dict[str, str]:
    return {"voice360": f"{ACR}/voice360:{voice}", "bic-agent": f"{ACR}/bic-agent:{bic}",
            "halo-task-manager-api": f"{ACR}/halo-task-manager-api:{halo}"}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path}/cp.db")


@pytest.fixture
def envs(kube_cluster: KubeCluster) -> dict[str, Env]:
    return {name: Env(kube_cluster, name) for name in ("main", "release", "production")}


def promote_all(envs: dict[str, Env], store: Store, images: dict[str, str]) -> None:
    for name in ("main", "release"):
        envs[name].deploy(images)
        assert envs[name].check(store).status == Status.OK


PROD = {"promoted_from": "main", "combination_from": "release"}


def test_production_running_promoted_images_is_ok_and_recorded_once(
        envs: dict[str, Env], store: Store) -> None:
    images = trio("0.1.31-r141", "0.1.27-r119", "1.4.0-r55")
    promote_all(envs, store, images)
    envs["production"].deploy(images, {"voice360": 3, "bic-agent": 8,
                                       "halo-task-manager-api": 5})
    envs["production"].helm("voice360-prod", 2, status="superseded")

    first = envs["production"].check(store, **PROD)
    second = envs["production"].check(store, **PROD)

    assert first.status == Status.OK
    assert first.message == ("production runs voice360 voice360:0.1.31-r141, bic-agent "
                             "bic-agent:0.1.27-r119, halo-task-manager-api "
                             "halo-task-manager-api:1.4.0-r55")
    assert (first.details["recorded"], second.details["recorded"]) == (True, False)
    services = first.details["manifest"]["services"]
    assert services["voice360"] == {
        "deployment": "voice360", "container": "voice360",
        "image": f"{ACR}/voice360:0.1.31-r141", "repository": f"{ACR}/voice360",
        "tag": "0.1.31-r141", "digest": None, "helm_release": "voice360-prod",
        "helm_revision": 3}
    assert [services[s]["helm_revision"] for s in HELM] == [3, 8, 5]


def test_image_main_never_ran_fails(envs: dict[str, Env], store: Store) -> None:
    promote_all(envs, store, trio("0.1.31-r141", "0.1.27-r119", "1.4.0-r55"))
    envs["production"].deploy(trio("0.1.31-r141", "0.1.28-r130", "1.4.0-r55"))

    result = envs["production"].check(store, **PROD)

    assert result.status == Status.FAILING
    assert result.message == (
        "bic-agent bic-agent:0.1.28-r130 never ran in main (build once, promote many); "
        "this combination was never released together in release: voice360 "
        "voice360:0.1.31-r141, bic-agent bic-agent:0.1.28-r130, halo-task-manager-api "
        "halo-task-manager-api:1.4.0-r55")


def test_a_rebuilt_tag_fails_by_its_digest(envs: dict[str, Env], store: Store) -> None:
    main = trio("0.1.31-r141", "0.1.27-r119", "1.4.0-r55")
    main["voice360"] += "@" + digest(1)
    promote_all(envs, store, main)
    prod = dict(main, voice360=f"{ACR}/voice360:0.1.31-r141@{digest(2)}")
    envs["production"].deploy(prod)

    result = envs["production"].check(store, promoted_from="main")

    assert result.status == Status.FAILING
    assert result.message == ("voice360 voice360:0.1.31-r141 was rebuilt: main ran that tag "
                              "with another digest (build once, promote many)")


def test_known_bad_image_fails_with_its_reason(envs: dict[str, Env], store: Store) -> None:
    images = trio("0.1.31-r141", "0.1.27-r121", "1.4.0-r55")
    promote_all(envs, store, images)
    envs["production"].deploy(images)

    result = envs["production"].check(store, **PROD, bad_images=[{
        "tag": "0.1.27-r121", "service": "bic-agent",
        "reason": "ships staging URLs in appconfig.json"}])

    assert result.status == Status.FAILING
    assert result.message == ("production runs bic-agent bic-agent:0.1.27-r121, a known bad "
                              "image: ships staging URLs in appconfig.json")


def test_combination_never_released_together_degrades(envs: dict[str, Env],
                                                      store: Store) -> None:
    # Each image went through main and release, but never these three at once.
    promote_all(envs, store, trio("0.1.31-r141", "0.1.27-r119", "1.4.0-r55"))
    for name in ("main", "release"):
        envs[name].set_image("voice360", f"{ACR}/voice360:0.1.32-r150")
        envs[name].set_image("bic-agent", f"{ACR}/bic-agent:0.1.27-r120")
        assert envs[name].check(store).details["recorded"] is True
    envs["production"].deploy(trio("0.1.32-r150", "0.1.27-r119", "1.4.0-r55"))

    result = envs["production"].check(store, **PROD)

    assert result.status == Status.DEGRADED
    assert result.message == (
        "this combination was never released together in release: voice360 "
        "voice360:0.1.32-r150, bic-agent bic-agent:0.1.27-r119, halo-task-manager-api "
        "halo-task-manager-api:1.4.0-r55")


def test_digest_comes_from_running_pods_status(kube_workers: KubeCluster, store: Store) -> None:
    env = Env(kube_workers, "production")
    env.deploy({"voice360": f"{ACR}/voice360:0.1.31-r141"})
    env.admin.wait_ready(env.ns, "voice360", 1)
    pod = env.admin.pods(env.ns, "voice360")[0]
    cs = pod.status.container_statuses[0]
    env.admin.core.patch_namespaced_pod_status(pod.metadata.name, env.ns, {"status": {
        "containerStatuses": [{"name": cs.name, "image": cs.image, "ready": True,
                               "restartCount": 0, "state": {"running": {}},
                               "imageID": f"{ACR}/voice360@{digest(7)}"}]}})

    result = env.check(store, services={"voice360": {"deployment": "voice360"}})

    assert result.details["manifest"]["services"]["voice360"]["digest"] == digest(7)


def test_missing_secret_permission_names_it(kube_cluster: KubeCluster, store: Store) -> None:
    ns = new_namespace(kube_cluster, "norights")
    cfg = ReleaseDriftConfig(id="release-x", env="production", namespace=ns,
                             cluster=product_connection(kube_cluster))
    result = ReleaseDriftProbe(cfg, ProbeContext(services=Services(store=store))).execute()

    assert result.status == Status.ERROR
    assert result.message == (f"403 Forbidden: the control plane may not list secrets in "
                              f"namespace {ns}; grant it in deploy/rbac/controlplane-rbac.yaml")


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "controlplane.yaml"
    path.write_text(f"environments:\n  production:\n    hosts: {{voice360: 360voice.techhalo.ai}}\n"
                    f"store:\n  dsn: sqlite:///{tmp_path}/cp.db\ncheck_files: []\n")
    return path


def test_manifest_commands_show_history_and_diff(envs: dict[str, Env], store: Store,
                                                 tmp_path: Path) -> None:
    promote_all(envs, store, trio("0.1.31-r141", "0.1.27-r119", "1.4.0-r55"))
    prod = envs["production"]
    prod.deploy(trio("0.1.30-r139", "0.1.27-r119", "1.4.0-r55"), {"voice360": 2})
    prod.check(store)
    prod.set_image("voice360", f"{ACR}/voice360:0.1.31-r141")
    prod.helm("voice360-prod", 3)
    prod.check(store)
    cfg = str(write_config(tmp_path))

    show = run_cli("manifest", "show", "--env", "production", "--config", cfg)
    history = run_cli("manifest", "history", "--env", "production", "--config", cfg, "--json")
    diff = run_cli("manifest", "diff", "main", "production", "--config", cfg)
    since = run_cli("manifest", "diff", "production", "--since", "2026-01-01T00:00:00Z",
                    "--config", cfg)
    unknown = run_cli("manifest", "show", "--env", "staging", "--config", cfg)

    assert show.returncode == 0, show.stderr
    lines = show.stdout.splitlines()
    assert lines[0].startswith("production  manifest 4  recorded ")
    assert lines[1:] == [
        "  voice360               voice360:0.1.31-r141  helm voice360-prod rev 3",
        "  bic-agent              bic-agent:0.1.27-r119  helm "
        "bic-agent-taskmanager-voice360-prod (no deployed revision)",
        "  halo-task-manager-api  halo-task-manager-api:1.4.0-r55  helm "
        "halo-task-manager-api-prod (no deployed revision)"]
    rows = json.loads(history.stdout)
    assert [r["services"]["voice360"]["tag"] for r in rows] == ["0.1.31-r141", "0.1.30-r139"]
    then = rows[1]["recorded_at"]
    since_first = run_cli("manifest", "diff", "production", "--since", then, "--config", cfg)
    assert since_first.stdout.splitlines() == [
        "bic-agent              same     bic-agent:0.1.27-r119",
        "halo-task-manager-api  same     halo-task-manager-api:1.4.0-r55",
        f"voice360               differs  production@{then}: voice360:0.1.30-r139 (rev 2)  "
        "production@now: voice360:0.1.31-r141 (rev 3)"]
    assert diff.stdout.splitlines() == [
        "bic-agent              same     bic-agent:0.1.27-r119",
        "halo-task-manager-api  same     halo-task-manager-api:1.4.0-r55",
        "voice360               differs  main: voice360:0.1.31-r141  production: "
        "voice360:0.1.31-r141 (rev 3)"]
    assert since.returncode == 2
    assert since.stderr == ("controlplane: no manifest of 'production' recorded before "
                            "2026-01-01T00:00:00Z\n")
    assert unknown.returncode == 2
    assert unknown.stderr == ("controlplane: no manifest recorded for 'staging'; recorded: "
                              "main, production, release (a release_drift check records "
                              "them)\n")
