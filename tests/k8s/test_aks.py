"""The `aks` check through the real azure-mgmt-containerservice SDK against the ARM fake."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.probes.aks import AksConfig, AksProbe
from controlplane.results import Result, Status
from controlplane.sandbox.arm_fake import DEFAULT_TOKEN, ArmFake, Cluster, Pool
from controlplane.sandbox.ca import LocalCA

SUB = "00000000-0000-0000-0000-000000000360"


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    return LocalCA(str(tmp_path / "ca"))


@pytest.fixture
def arm(ca: LocalCA) -> Iterator[ArmFake]:
    fake = ArmFake()
    fake.start(ca.server_context(["127.0.0.1"]))
    yield fake
    fake.stop()


@pytest.fixture
def token(tmp_path: Path) -> str:
    path = tmp_path / "arm-token"
    path.write_text(DEFAULT_TOKEN + "\n")
    return str(path)


def run(arm: ArmFake, ca: LocalCA, token: str, **fields: Any) -> Result:
    base = {"id": "aks-prod", "subscription_id": SUB, "resource_group": "voice360-prod-rg",
            "cluster_name": "voice360-prod-aks", "credential": "token_file",
            "token_file": token, "arm_endpoint": arm.url, "ca_file": ca.ca_file, "timeout": 5}
    return AksProbe(AksConfig.model_validate({**base, **fields})).execute()


def test_seed_cluster_is_one_zone_pool_with_autoscale_3_to_6(arm: ArmFake, ca: LocalCA,
                                                           token: str) -> None:
    arm.seed_platform(SUB)

    result = run(arm, ca, token)

    assert result.status == Status.DEGRADED
    assert result.message == ("voice360-prod-aks: 1 pool(s), 3 node(s); singleZoneNodePool "
                              "(pool nodepool1: zones: none (regional, no zone guarantee))")
    assert result.details["pools"] == [{
        "name": "nodepool1", "mode": "System", "count": 3, "autoscaling": True,
        "min_count": 3, "max_count": 6, "vm_size": "Standard_D4s_v3", "zones": [],
        "orchestrator_version": "1.33.2", "provisioning_state": "Succeeded",
        "power_state": "Running"}]
    assert result.details["cluster"] == {"name": "voice360-prod-aks", "location": "eastus",
                                         "kubernetes_version": "1.33.2"}


def test_zonal_autoscaled_supported_pool_is_ok(arm: ArmFake, ca: LocalCA, token: str) -> None:
    arm.add(Cluster(SUB, "voice360-prod-rg", "voice360-prod-aks",
                    pools=[Pool("system", 3, zones=["1", "2", "3"])]))

    result = run(arm, ca, token)

    assert result.status == Status.OK
    assert result.message == "voice360-prod-aks: 1 pool(s), 3 node(s), no findings"


def test_fixed_size_old_version_pool_fails_where_configured(arm: ArmFake, ca: LocalCA,
                                                            token: str) -> None:
    arm.add(Cluster(SUB, "voice360-prod-rg", "voice360-prod-aks", version="1.30.9", pools=[
        Pool("system", 3, zones=["1", "2", "3"], version="1.30.9"),
        Pool("user", 2, autoscale=None, zones=["1", "2", "3"], version="1.28.5", mode="User",
             power="Stopped")]))

    result = run(arm, ca, token, failing_findings=["kubernetesVersionOutOfSupport"])

    assert result.status == Status.FAILING
    assert result.message == (
        "voice360-prod-aks: 2 pool(s), 5 node(s); pool user is Stopped; "
        "kubernetesVersionOutOfSupport (control plane: 1.30.9 is supported only under LTS "
        "(Premium tier)); kubernetesVersionOutOfSupport (pool system: 1.30.9 is supported "
        "only under LTS (Premium tier)); kubernetesVersionOutOfSupport (pool user: 1.28.5 is "
        "past Azure's support window); autoscalingDisabled (pool user: fixed at 2 nodes)")


def test_wrong_token_is_401_with_instruction(arm: ArmFake, ca: LocalCA, tmp_path: Path) -> None:
    arm.seed_platform(SUB)
    bad = tmp_path / "bad"
    bad.write_text("expired-token")

    result = run(arm, ca, str(bad))

    assert result.status == Status.ERROR
    assert result.message == ("ARM refused the credentials (401 InvalidAuthenticationToken): "
                              "renew the token or check the identity's role assignment")
    assert "expired-token" not in result.model_dump_json()


def test_unknown_cluster_is_404_naming_it(arm: ArmFake, ca: LocalCA, token: str) -> None:
    arm.seed_platform(SUB)

    result = run(arm, ca, token, cluster_name="voice360-prod-aks2")

    assert result.status == Status.ERROR
    assert result.message == ("AKS cluster voice360-prod-aks2 in resource group "
                              "voice360-prod-rg not found (404 ResourceNotFound); check "
                              "subscription_id, resource_group and cluster_name")


def test_throttling_waits_out_retry_after_within_the_timeout(arm: ArmFake, ca: LocalCA,
                                                             token: str) -> None:
    arm.seed_platform(SUB)
    arm.throttle(retry_after=1, count=1, match="/agentPools")
    t0 = time.monotonic()

    result = run(arm, ca, token)

    assert result.status == Status.DEGRADED  # the seed's single zone: the run completed
    assert time.monotonic() - t0 >= 1.0
    assert [s for p, s in arm.calls if p.endswith("/agentPools")] == [429, 200]


def test_throttling_longer_than_the_timeout_is_an_error_saying_so(
        arm: ArmFake, ca: LocalCA, token: str) -> None:
    arm.seed_platform(SUB)
    arm.throttle(retry_after=120, count=None)

    result = run(arm, ca, token)

    assert result.status == Status.ERROR
    assert result.message.startswith("ARM is throttling (429, Retry-After 120 s, more than the ")
    assert result.message.endswith(" s left of this run); the next run tries again")
    assert result.duration_s < 5
    assert arm.count() == 1


def test_token_file_credential_needs_its_file() -> None:
    with pytest.raises(ValueError) as exc:
        AksConfig.model_validate({"id": "a", "subscription_id": SUB, "resource_group": "r",
                                  "cluster_name": "c", "credential": "token_file"})
    assert "credential: token_file needs token_file" in str(exc.value)
