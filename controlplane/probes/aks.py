"""`aks`: the AKS cluster's node pools, read from Azure Resource Manager.

Through ``azure-mgmt-containerservice`` (credentials from ``azure-identity``: workload
identity inside the cluster, a service principal from ``AZURE_CLIENT_ID`` /
``AZURE_TENANT_ID`` / ``AZURE_CLIENT_SECRET`` elsewhere; or a bearer token in a file). Per
node pool: count, autoscale bounds, VM size, availability zones, orchestrator version,
provisioning and power state. Findings (degraded by default, failing where configured):

- ``singleZoneNodePool``: the pool runs in fewer than ``min_zones`` zones (P4);
- ``autoscalingDisabled``: the pool cannot grow under load or replace lost capacity;
- ``kubernetesVersionOutOfSupport``: the pool's (or control plane's) minor version is not
  among the versions AKS supports in the cluster's region (or only under LTS).

A pool that failed provisioning or is stopped fails the check. ARM's 429 is waited out when
its ``Retry-After`` fits in the run's timeout; otherwise the run is ``error`` and says when.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import known_finding_ids
from controlplane.results import Status, worst

FINDINGS = {
    "singleZoneNodePool": (
        "a zone outage takes every node of the pool, and every pod on it",
        "recreate the pool with availabilityZones 1, 2 and 3 (zones cannot be added in place)"),
    "autoscalingDisabled": (
        "the pool cannot add nodes under load or replace lost capacity by itself",
        "enable the cluster autoscaler on the pool (az aks nodepool update "
        "--enable-cluster-autoscaler --min-count 3 --max-count 6)"),
    "kubernetesVersionOutOfSupport": (
        "outside Azure's support window there are no security patches or support cases",
        "upgrade the control plane and the pool to a supported minor version "
        "(az aks upgrade)"),
}


class AksConfig(CheckConfig):
    kind: Literal["aks"] = "aks"
    subscription_id: str
    resource_group: str
    cluster_name: str
    credential: Literal["default", "token_file"] = "default"
    token_file: str | None = None
    arm_endpoint: str = Field(default="https://management.azure.com", pattern=r"^https://")
    ca_file: str | None = Field(default=None, description="CA bundle for arm_endpoint")
    min_zones: int = Field(default=2, ge=1)
    failing_findings: list[str] = Field(default_factory=list)
    ignore_findings: list[str] = Field(default_factory=list)

    _ids = field_validator("failing_findings", "ignore_findings")(
        known_finding_ids(FINDINGS))

    @model_validator(mode="after")
    def _token(self) -> AksConfig:
        if (self.credential == "token_file") != (self.token_file is not None):
            raise ValueError("credential: token_file needs token_file (and token_file needs "
                             "credential: token_file)")
        return self


class StaticTokenCredential:
    """A bearer token read from a file on every request (e.g. one a sidecar refreshes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        try:
            with open(self.path) as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ProbeError(f"cannot read token_file {self.path}: {exc.strerror}") from None
        return AccessToken(token, int(time.time()) + 300)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessTokenInfo

        tok = self.get_token(*scopes)
        return AccessTokenInfo(tok.token, tok.expires_on)


class AksProbe(Probe[AksConfig]):
    kind = "aks"
    config_model = AksConfig

    def check(self) -> Outcome:
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout
        client = self._client()
        try:
            mc = self._call(lambda: client.managed_clusters.get(cfg.resource_group,
                                                               cfg.cluster_name), deadline)
            pools = self._call(lambda: list(client.agent_pools.list(
                cfg.resource_group, cfg.cluster_name)), deadline)
            versions = self._call(lambda: client.managed_clusters.list_kubernetes_versions(
                mc.location), deadline)
        finally:
            client.close()
        supported, lts_only = _support(versions)
        rows = [_pool_row(p) for p in pools]
        findings = self._findings(rows, mc, supported, lts_only)
        return self._verdict(mc, rows, findings)

    def _client(self) -> Any:
        from azure.mgmt.containerservice import ContainerServiceClient

        cfg = self.config
        if cfg.credential == "token_file":
            credential: Any = StaticTokenCredential(str(cfg.token_file))
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        kwargs: dict[str, Any] = {"retry_total": 0, "connection_timeout": cfg.timeout,
                                  "read_timeout": cfg.timeout}
        if cfg.ca_file:
            kwargs["connection_verify"] = cfg.ca_file
        return ContainerServiceClient(credential, cfg.subscription_id,
                                      base_url=cfg.arm_endpoint.rstrip("/"),
                                      credential_scopes=[f"{_audience(cfg.arm_endpoint)}/"
                                                         ".default"], **kwargs)

    def _call(self, fn: Any, deadline: float) -> Any:
        """One ARM call; 429 waits out Retry-After while it fits in the run's deadline."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )

        cfg = self.config
        while True:
            try:
                return fn()
            except ClientAuthenticationError as exc:
                raise ProbeError(f"ARM refused the credentials (401 {_code(exc)}): renew the "
                                 "token or check the identity's role assignment") from None
            except ResourceNotFoundError as exc:
                raise ProbeError(f"AKS cluster {cfg.cluster_name} in resource group "
                                 f"{cfg.resource_group} not found (404 {_code(exc)}); check "
                                 "subscription_id, resource_group and cluster_name") from None
            except HttpResponseError as exc:
                status = exc.status_code or 0
                if status != 429:
                    raise ProbeError(f"ARM answered {status} {_code(exc)}: "
                                     f"{_message(exc)}") from None
                wait = _retry_after(exc)
                left = deadline - time.monotonic()
                if wait > left:
                    raise ProbeError(f"ARM is throttling (429, Retry-After {wait:g} s, more "
                                     f"than the {max(left, 0):.0f} s left of this run); the "
                                     "next run tries again") from None
                time.sleep(wait)
            except ServiceRequestError as exc:
                raise ProbeError(f"cannot reach ARM at {cfg.arm_endpoint}: {exc}") from None

    def _findings(self, rows: list[dict[str, Any]], mc: Any, supported: set[str],
                  lts_only: set[str]) -> list[dict[str, Any]]:
        cfg = self.config
        out: list[tuple[str, str, str]] = []
        cp_version = str(mc.current_kubernetes_version or mc.kubernetes_version or "")
        for what, version in [("control plane", cp_version)] + [
                (f"pool {r['name']}", r["orchestrator_version"]) for r in rows]:
            minor = _minor(version)
            if minor and minor not in supported:
                how = "supported only under LTS (Premium tier)" if minor in lts_only else \
                    "past Azure's support window"
                out.append(("kubernetesVersionOutOfSupport", what, f"{version} is {how}"))
        for r in rows:
            if len(r["zones"]) < cfg.min_zones:
                zones = ", ".join(r["zones"]) or "none (regional, no zone guarantee)"
                out.append(("singleZoneNodePool", f"pool {r['name']}", f"zones: {zones}"))
            if not r["autoscaling"]:
                out.append(("autoscalingDisabled", f"pool {r['name']}",
                            f"fixed at {r['count']} nodes"))
        return [{"id": fid, "resource": res, "detail": detail, "why": FINDINGS[fid][0],
                 "fix": FINDINGS[fid][1],
                 "severity": "failing" if fid in cfg.failing_findings else "degraded"}
                for fid, res, detail in out if fid not in cfg.ignore_findings]

    def _verdict(self, mc: Any, rows: list[dict[str, Any]],
                 findings: list[dict[str, Any]]) -> Outcome:
        cfg = self.config
        problems: list[tuple[Status, str]] = []
        for r in rows:
            if r["provisioning_state"] != "Succeeded":
                problems.append((Status.FAILING, f"pool {r['name']} provisioning "
                                 f"{r['provisioning_state']}"))
            if r["power_state"] != "Running":
                problems.append((Status.FAILING, f"pool {r['name']} is {r['power_state']}"))
        for f in findings:
            problems.append((Status(f["severity"]), f"{f['id']} ({f['resource']}: "
                             f"{f['detail']})"))
        nodes = sum(r["count"] for r in rows)
        head = f"{cfg.cluster_name}: {len(rows)} pool(s), {nodes} node(s)"
        details = {"cluster": {"name": mc.name, "location": mc.location,
                               "kubernetes_version": mc.current_kubernetes_version
                               or mc.kubernetes_version},
                   "pools": rows, "findings": findings}
        metrics: dict[str, float | None] = {"pools": len(rows), "nodes": nodes,
                                            "findings": len(findings)}
        if not problems:
            return Outcome(Status.OK, f"{head}, no findings", metrics, details)
        ordered = sorted(problems, key=lambda p: -p[0].rank)
        return Outcome(worst([s for s, _ in problems]),
                       f"{head}; " + "; ".join(m for _, m in ordered), metrics, details)


def _pool_row(p: Any) -> dict[str, Any]:
    power = getattr(p.power_state, "code", None) if p.power_state else None
    return {"name": p.name, "mode": _s(p.mode), "count": int(p.count or 0),
            "autoscaling": bool(p.enable_auto_scaling), "min_count": p.min_count,
            "max_count": p.max_count, "vm_size": p.vm_size,
            "zones": sorted(p.availability_zones or []),
            "orchestrator_version": str(p.current_orchestrator_version
                                        or p.orchestrator_version or ""),
            "provisioning_state": _s(p.provisioning_state), "power_state": _s(power)}


def _support(result: Any) -> tuple[set[str], set[str]]:
    """(minor versions under the standard plan, minor versions under LTS only)."""
    values = getattr(result, "values", None)
    if callable(values):  # newer SDK models are mappings: .values is the dict method
        values = result.get("values")
    std, lts = set(), set()
    for v in values or []:
        plans = {_s(x) for x in (getattr(v.capabilities, "support_plan", None) or [])} \
            if v.capabilities else set()
        if v.is_preview:
            continue
        if "KubernetesOfficial" in plans or not plans:
            std.add(_minor(str(v.version)))
        elif "AKSLongTermSupport" in plans:
            lts.add(_minor(str(v.version)))
    return std, lts


def _minor(version: str) -> str:
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else version


def _s(value: Any) -> str:
    return str(getattr(value, "value", value)) if value is not None else ""


def _audience(endpoint: str) -> str:
    return endpoint.rstrip("/")


def _code(exc: Any) -> str:
    err = getattr(exc, "error", None)
    return str(getattr(err, "code", "") or getattr(exc, "reason", "") or "")


def _message(exc: Any) -> str:
    err = getattr(exc, "error", None)
    return str(getattr(err, "message", "") or exc.message or "").splitlines()[0]


def _retry_after(exc: Any) -> float:
    resp = getattr(exc, "response", None)
    value = resp.headers.get("Retry-After") if resp is not None else None
    try:
        return max(float(value), 0.0) if value is not None else 1.0
    except ValueError:
        return 1.0
