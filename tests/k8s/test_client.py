"""The cluster connection against the test bed: the three ways in, and refused tokens."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from controlplane.k8s.client import ClusterConnection, Kube, KubeError
from controlplane.k8s.testbed import KubeCluster
from tests.services.kube import new_namespace, product_connection

pytestmark = pytest.mark.kube


def list_pods(conn: ClusterConnection, ns: str) -> list[Any]:
    with Kube(conn, 10) as kube:
        return list(kube.json(f"list pods in namespace {ns}",
                              kube.core().list_namespaced_pod, ns)["items"])


def test_api_server_with_token_file_and_ca_reads_as_the_product(kube_cluster: KubeCluster,
                                                                  kube_ns: str) -> None:
    assert list_pods(product_connection(kube_cluster), kube_ns) == []


def test_kubeconfig_with_context_reads_as_its_user(kube_cluster: KubeCluster,
                                                   kube_ns: str) -> None:
    conn = ClusterConnection(kubeconfig=kube_cluster.kubeconfig("controlplane"),
                             context="testbed")
    assert list_pods(conn, kube_ns) == []


def test_in_cluster_outside_a_pod_says_so() -> None:
    with pytest.raises(KubeError) as exc:
        Kube(ClusterConnection(in_cluster=True), 5)
    assert str(exc.value).startswith("cannot load the cluster credentials (in-cluster service "
                                     "account): ")


def test_unreadable_token_file_is_named(tmp_path: Path) -> None:
    conn = ClusterConnection(api_server="https://127.0.0.1:1", token_file=str(tmp_path / "no"))
    with pytest.raises(KubeError) as exc:
        Kube(conn, 5)
    assert str(exc.value) == (f"cannot read token_file {tmp_path}/no: No such file or "
                              "directory")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_token(cluster: KubeCluster, ns: str, name: str, uid: str,
                          expires_in: float) -> str:
    """A service-account JWT as the API server itself signs them (RS256, its issuer and
    audience), valid for ``expires_in`` seconds (negative: already expired)."""
    assert cluster.pki is not None
    with open(cluster.pki.sa_key_file, "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    now = int(time.time())
    issuer = "https://kubernetes.default.svc.cluster.local"
    claims = {"iss": issuer, "aud": [issuer], "sub": f"system:serviceaccount:{ns}:{name}",
              "iat": now - 3600, "nbf": now - 3600, "exp": int(now + expires_in),
              "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}}}
    signing = (_b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "."
               + _b64(json.dumps(claims).encode()))
    sig = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing + "." + _b64(sig)


def test_expired_token_is_refused_with_renew_instruction(kube_cluster: KubeCluster,
                                                         tmp_path: Path) -> None:
    from kubernetes import client

    ns = new_namespace(kube_cluster)
    core: Any = client.CoreV1Api(kube_cluster.api_client())
    sa = core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
    token_file = tmp_path / "token"

    def conn(expires_in: float) -> ClusterConnection:
        token_file.write_text(service_account_token(kube_cluster, ns, "reader",
                                                    sa.metadata.uid, expires_in))
        return ClusterConnection(api_server=kube_cluster.server, token_file=str(token_file),
                                 ca_file=kube_cluster.ca_file)

    with pytest.raises(KubeError) as fresh:
        list_pods(conn(600), ns)
    with pytest.raises(KubeError) as expired:
        list_pods(conn(-60), ns)

    # The same token unexpired authenticates (and is only short of rights).
    assert fresh.value.status == 403
    assert expired.value.status == 401
    assert str(expired.value) == (f"401 Unauthorized while trying to list pods in namespace "
                                  f"{ns}: the API server refused the token (expired, revoked "
                                  "or unknown); renew the credentials")
