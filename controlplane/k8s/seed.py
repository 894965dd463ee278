"""The platform's cluster as its seed document shows it, for the demo and the sandbox.

Namespaces ``360voice-prod``, ``kafka``, ``ingress-nginx``, ``cert-manager``; in
``360voice-prod`` the three Deployments (voice360 x1 on :8000, bic-agent x2 on :4200,
halo-task-manager-api x1 on :44301 with its /health liveness probe), their plain Secrets
and the Helm release records (voice360-prod rev 3, bic-agent-taskmanager-voice360-prod
rev 8, halo-task-manager-api-prod rev 5). Values are made up; they only look like the
real ones.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

NAMESPACE = "360voice-prod"
NAMESPACES = (NAMESPACE, "kafka", "ingress-nginx", "cert-manager")
ACR = "360voiceprod.azurecr.io"

SERVICES: dict[str, dict[str, Any]] = {
    "voice360": {"replicas": 1, "port": 8000, "liveness": "/", "tag": "0.1.31-r141",
                 "secret": "voice360-env", "release": "voice360-prod", "rev": 3},
    "bic-agent": {"replicas": 2, "port": 4200, "liveness": "/", "tag": "0.1.27-r121",
                  "secret": "bic-agent-taskmanager-env",
                  "release": "bic-agent-taskmanager-voice360-prod", "rev": 8},
    "halo-task-manager-api": {"replicas": 1, "port": 44301, "liveness": "/health",
                              "tag": "1.4.0-r55", "secret": "halo-task-manager-api-env",
                              "release": "halo-task-manager-api-prod", "rev": 5},
}

SECRETS: dict[str, dict[str, str]] = {
    "voice360-env": {"DATABASE_URL": "postgresql://voice:sandbox@db:5432/voice",
                     "OPENAI_API_KEY": "sk-sandbox-not-real", "KAFKA_BOOTSTRAP": "kafka:9092"},
    "bic-agent-taskmanager-env": {"API_BASE_URL": "https://api-halo-task.techhalo.ai",
                                  "RECAPTCHA_KEY": "sandbox-recaptcha"},
    "halo-task-manager-api-env": {"ConnectionStrings__Default": "Host=db;Password=sandbox",
                                  "Twilio__AuthToken": "sandbox-twilio",
                                  "Stripe__SecretKey": "sk_test_sandbox"},
}


def deployment(name: str, svc: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name, "app.kubernetes.io/managed-by": "Helm"}
    probe = {"httpGet": {"path": svc["liveness"], "port": svc["port"]}}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels, "annotations": {
                "meta.helm.sh/release-name": svc["release"],
                "meta.helm.sh/release-namespace": NAMESPACE}},
            "spec": {"replicas": svc["replicas"], "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                         "name": name, "image": f"{ACR}/{name}:{svc['tag']}",
                         "ports": [{"containerPort": svc["port"]}],
                         "livenessProbe": probe,
                         "envFrom": [{"secretRef": {"name": svc["secret"]}}]}]}}}}


def helm_record(release: str, rev: int, status: str) -> dict[str, Any]:
    body = base64.b64encode(gzip.compress(json.dumps(
        {"name": release, "version": rev, "info": {"status": status}}).encode())).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": f"sh.helm.release.v1.{release}.v{rev}",
                         "labels": {"owner": "helm", "name": release, "version": str(rev),
                                    "status": status}},
            "data": {"release": base64.b64encode(body.encode()).decode()}}


def seed(api: Any) -> None:
    """Create everything (an ``ApiClient`` with rights to do so); existing objects stay."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core: Any = client.CoreV1Api(api)
    apps: Any = client.AppsV1Api(api)

    def create(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except ApiException as exc:
            if exc.status != 409:
                raise

    for ns in NAMESPACES:
        create(core.create_namespace, {"metadata": {"name": ns}})
    for name, data in SECRETS.items():
        create(core.create_namespaced_secret, NAMESPACE, {
            "metadata": {"name": name}, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})
    for name, svc in SERVICES.items():
        for rev in range(1, svc["rev"] + 1):
            status = "deployed" if rev == svc["rev"] else "superseded"
            create(core.create_namespaced_secret, NAMESPACE, helm_record(svc["release"], rev,
                                                                         status))
        create(apps.create_namespaced_deployment, NAMESPACE, deployment(name, svc))
