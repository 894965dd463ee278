"""A stateful Azure Resource Manager fake for the AKS paths the `aks` check reads.

Speaks, over HTTPS (azure-core sends bearer tokens over TLS only), with ARM's shapes:

- ``GET /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/
  managedClusters/{name}`` (a ManagedCluster),
- ``GET …/managedClusters/{name}/agentPools`` (``{"value": [AgentPool, …]}``),
- ``GET /subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{loc}/
  kubernetesVersions`` (``{"values": [KubernetesVersion, …]}``),

every one requiring ``api-version`` and ``Authorization: Bearer <token>``. Errors are ARM's:
401 ``InvalidAuthenticationToken``, 404 ``ResourceNotFound`` / ``ResourceGroupNotFound``,
429 with ``Retry-After`` (:meth:`ArmFake.throttle`). Point
``ContainerServiceClient(credential, sub, base_url=fake.url, connection_verify=ca_file)``
at it. :meth:`ArmFake.seed_platform` loads the platform's cluster as its seed shows it.
"""

from __future__ import annotations

import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from controlplane.sandbox.fakehttp import FakeServer, Request, Response

DEFAULT_TOKEN = "arm-sandbox-token"
PROVIDER = "providers/Microsoft.ContainerService"
_CLUSTER = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/"
                      + PROVIDER + r"/managedClusters/(?P<name>[^/]+)(?P<pools>/agentPools)?$",
                      re.IGNORECASE)
_VERSIONS = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/" + PROVIDER
                       + r"/locations/(?P<loc>[^/]+)/kubernetesVersions$", re.IGNORECASE)

# Minor versions AKS supports in the fake's world (the newest three plus an LTS-only one).
DEFAULT_VERSIONS: list[dict[str, Any]] = [
    {"version": v, "isDefault": v == "1.33", "isPreview": False,
     "capabilities": {"supportPlan": ["KubernetesOfficial", "AKSLongTermSupport"]},
     "patchVersions": {f"{v}.{p}": {"upgrades": []} for p in (1, 2, 3)}}
    for v in ("1.32", "1.33", "1.34")
] + [{"version": "1.30", "isDefault": False, "isPreview": False,
      "capabilities": {"supportPlan": ["AKSLongTermSupport"]},
      "patchVersions": {"1.30.9": {"upgrades": []}}}]


@dataclass
class Pool:
    name: str
    count: int
    vm_size: str = "Standard_D4s_v3"
    autoscale: tuple[int, int] | None = (3, 6)
    zones: list[str] = field(default_factory=list)
    version: str = "1.33.2"
    mode: str = "System"
    provisioning: str = "Succeeded"
    power: str = "Running"

    def arm(self, cluster_id: str) -> dict[str, Any]:
        props: dict[str, Any] = {
            "count": self.count, "vmSize": self.vm_size, "osType": "Linux", "mode": self.mode,
            "type": "VirtualMachineScaleSets", "enableAutoScaling": self.autoscale is not None,
            "orchestratorVersion": self.version, "currentOrchestratorVersion": self.version,
            "provisioningState": self.provisioning, "powerState": {"code": self.power}}
        if self.autoscale is not None:
            props["minCount"], props["maxCount"] = self.autoscale
        if self.zones:
            props["availabilityZones"] = list(self.zones)
        return {"id": f"{cluster_id}/agentPools/{self.name}", "name": self.name,
                "type": "Microsoft.ContainerService/managedClusters/agentPools",
                "properties": props}


@dataclass
class Cluster:
    subscription: str
    resource_group: str
    name: str
    location: str = "eastus"
    version: str = "1.33.2"
    pools: list[Pool] = field(default_factory=list)

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/"
                f"{PROVIDER}/managedClusters/{self.name}")

    def arm(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "location": self.location,
                "type": "Microsoft.ContainerService/ManagedClusters",
                "properties": {"kubernetesVersion": self.version,
                               "currentKubernetesVersion": self.version,
                               "provisioningState": "Succeeded",
                               "powerState": {"code": "Running"},
                               "agentPoolProfiles": [dict(p.arm(self.id)["properties"],
                                                          name=p.name) for p in self.pools]}}


class ArmFake:
    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.clusters: dict[tuple[str, str, str], Cluster] = {}
        self.versions: list[dict[str, Any]] = list(DEFAULT_VERSIONS)
        self.calls: list[tuple[str, int]] = []  # (path, status) in arrival order
        self._lock = threading.Lock()
        self.server = FakeServer(self._handle, self._record)

    def start(self, ssl_context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0) -> str:
        return self.server.start(host, port, ssl_context)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def add(self, cluster: Cluster) -> Cluster:
        with self._lock:
            self.clusters[(cluster.subscription.lower(), cluster.resource_group.lower(),
                           cluster.name.lower())] = cluster
        return cluster

    def seed_platform(self, subscription: str = "00000000-0000-0000-0000-000000000360",
                      ) -> Cluster:
        """voice360-prod-aks as the seed shows it: eastus, 3x Standard_D4s_v3, autoscale 3-6,
        one zone (no availabilityZones: the pool is zonal nowhere)."""
        return self.add(Cluster(subscription, "voice360-prod-rg", "voice360-prod-aks",
                                pools=[Pool("nodepool1", 3)]))

    # -- faults --------------------------------------------------------------------------

    def throttle(self, retry_after: int, count: int | None = 1, match: str = "") -> None:
        """The next ``count`` requests get ARM's 429 with ``Retry-After``."""
        self.server.add_fault(match or "/subscriptions/", Response(429, {"error": {
            "code": "TooManyRequests",
            "message": "The request is being throttled as the limit has been reached for "
                       "operation type - Read_ObservationWindow_00:05:00."}},
            {"Retry-After": str(retry_after)}), count)

    def heal(self) -> None:
        self.server.clear_faults()

    def count(self, fragment: str = "") -> int:
        with self._lock:
            return sum(1 for path, _ in self.calls if fragment in path)

    # -- the API -------------------------------------------------------------------------

    def _record(self, req: Request, resp: Response) -> None:
        with self._lock:
            self.calls.append((req.path, resp.status))

    def _handle(self, req: Request) -> Response:
        if req.method != "GET":
            return _error(405, "MethodNotAllowed", f"{req.method} is not served by this fake")
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return Response(401, {"error": {
                "code": "InvalidAuthenticationToken",
                "message": "The access token is invalid."}},
                {"WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", '
                                     'error="invalid_token"'})
        if "api-version" not in req.query:
            return _error(400, "MissingApiVersionParameter",
                          "The api-version query parameter (?api-version=) is required for "
                          "all requests.")
        m = _VERSIONS.match(req.path)
        if m:
            return Response(200, {"values": self.versions})
        m = _CLUSTER.match(req.path)
        if not m:
            return _error(404, "InvalidResourceType", f"no such path {req.path}")
        with self._lock:
            cluster = self.clusters.get((m["sub"].lower(), m["rg"].lower(), m["name"].lower()))
            groups = {rg for _, rg, _ in self.clusters}
        if cluster is None:
            if m["rg"].lower() not in groups:
                return _error(404, "ResourceGroupNotFound",
                              f"Resource group '{m['rg']}' could not be found.")
            return _error(404, "ResourceNotFound",
                          f"The Resource 'Microsoft.ContainerService/managedClusters/"
                          f"{m['name']}' under resource group '{m['rg']}' was not found.")
        if m["pools"]:
            return Response(200, {"value": [p.arm(cluster.id) for p in cluster.pools]})
        return Response(200, cluster.arm())


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}})
