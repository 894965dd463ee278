"""How the control plane reaches a Kubernetes API: one config block, one client factory,
one wording of errors.

The ``cluster`` block of a check (or of the kubernetes-secrets backup) names exactly one
way in: a kubeconfig file, the pod's in-cluster service account, or an API server URL with
a token file (re-read on every run: projected tokens rotate) and a CA file.

Errors become :class:`KubeError` with a sentence a human acts on: a 403 names the verb and
resource the control plane's Role lacks, a 401 says the token was refused, a timeout says
how long it waited. Tokens never appear in a message.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controlplane.durations import Duration

log = logging.getLogger(__name__)

RBAC_HINT = "grant it in deploy/rbac/controlplane-rbac.yaml"


class ClusterConnection(BaseModel):
    """Where the Kubernetes API is and who we are to it."""

    model_config = ConfigDict(extra="forbid")

    kubeconfig: str | None = Field(default=None, description="path to a kubeconfig file")
    context: str | None = Field(default=None, description="kubeconfig context (default: current)")
    in_cluster: bool = False
    api_server: str | None = Field(default=None, pattern=r"^https?://")
    token_file: str | None = None
    ca_file: str | None = None
    request_timeout: Duration | None = Field(
        default=None, description="per API request; default: the check's timeout")

    @model_validator(mode="after")
    def _one_way_in(self) -> ClusterConnection:
        ways = [w for w, on in (("kubeconfig", self.kubeconfig is not None),
                                ("in_cluster", self.in_cluster),
                                ("api_server", self.api_server is not None)) if on]
        if len(ways) != 1:
            raise ValueError("you must specify exactly one of kubeconfig, in_cluster: true, or "
                             f"api_server (with token_file); got {', '.join(ways) or 'none'}")
        if self.api_server is not None and self.token_file is None:
            raise ValueError("api_server needs token_file (a file holding the bearer token)")
        if self.api_server is None and (self.token_file or self.ca_file):
            raise ValueError("token_file and ca_file go with api_server only")
        if self.context is not None and self.kubeconfig is None:
            raise ValueError("context goes with kubeconfig only")
        return self

    def describe(self) -> str:
        if self.kubeconfig:
            return f"kubeconfig {self.kubeconfig}" + (f" ({self.context})" if self.context else "")
        return "in-cluster service account" if self.in_cluster else str(self.api_server)


class KubeError(Exception):
    """The API could not answer as needed; the message says what to do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Kube:
    """An API client plus the run's timeout; :meth:`call` wraps every request so its
    failure reads as one sentence (:func:`describe_error`)."""

    def __init__(self, conn: ClusterConnection, timeout: float) -> None:
        self.conn = conn
        self.api = api_client(conn)
        self.server = str(self.api.configuration.host)
        self.timeout = conn.request_timeout or timeout

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except Exception as exc:
            raise describe_error(exc, what, self.server) from None

    def json(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """The answer as plain JSON: the client's model classes cost ~10x the parse and
        add nothing a check reads."""
        resp = self.call(what, fn, *args, _preload_content=False, **kwargs)
        try:
            return json.loads(resp.data)
        finally:
            resp.release_conn()

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api)

    def autoscaling(self) -> Any:
        from kubernetes import client

        return client.AutoscalingV2Api(self.api)

    def policy(self) -> Any:
        from kubernetes import client

        return client.PolicyV1Api(self.api)

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def api_client(conn: ClusterConnection) -> Any:
    """A ``kubernetes.client.ApiClient``; no retries (a run has one deadline)."""
    from kubernetes import client
    from kubernetes import config as kube_config

    # Typed Any: the loaders are untyped in some client releases and typed in others.
    config: Any = kube_config
    cfg = client.Configuration()
    try:
        if conn.kubeconfig:
            config.load_kube_config(config_file=conn.kubeconfig, context=conn.context,
                                    client_configuration=cfg, persist_config=False)
        elif conn.in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            cfg.host = str(conn.api_server).rstrip("/")
            # The scheme goes into the value: client releases differ in which key they look
            # up the prefix under ("authorization" before v36, "BearerToken" since).
            cfg.api_key = {"authorization": "Bearer " + _read_token(str(conn.token_file))}
            if conn.ca_file:
                cfg.ssl_ca_cert = conn.ca_file
    except (config.ConfigException, OSError) as exc:
        raise KubeError(f"cannot load the cluster credentials ({conn.describe()}): "
                        f"{_first_line(exc)}") from None
    cfg.retries = 0
    return client.ApiClient(cfg)


def _read_token(path: str) -> str:
    try:
        with open(path) as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise KubeError(f"cannot read token_file {path}: {exc.strerror}") from None
    if not token:
        raise KubeError(f"token_file {path} is empty")
    return token


_FORBIDDEN = re.compile(r'cannot (?P<verb>[a-z]+) resource "(?P<resource>[^"]+)"'
                        r'(?: in API group "(?P<group>[^"]*)")?'
                        r'(?: in the namespace "(?P<ns>[^"]+)")?')


def describe_error(exc: BaseException, what: str, server: str = "") -> KubeError:
    """One sentence for a failed API call ``what`` (e.g. "list deployments in ns")."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error
    from urllib3.exceptions import MaxRetryError, NewConnectionError
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException):
        return _api_error(exc, what)
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    where = f" at {server}" if server else ""
    # Connect, TLS handshake or read: a hung server times out in any of them. (A refused
    # connection is a NewConnectionError, which urllib3 derives from its timeout class.)
    if isinstance(reason, Urllib3Timeout | TimeoutError) and not isinstance(
            reason, NewConnectionError):
        return KubeError(f"the Kubernetes API{where} did not answer in time while trying to "
                         f"{what} (timed out); is the API server overloaded or hung?")
    if isinstance(reason, Urllib3Error | OSError):
        return KubeError(f"cannot reach the Kubernetes API{where} to {what}: "
                         f"{_first_line(reason)}")
    return KubeError(f"{what} failed: {type(exc).__name__}: {_first_line(exc)}")


def _api_error(exc: Any, what: str) -> KubeError:
    status = int(exc.status or 0)
    if status == 0:  # the client turns urllib3's SSLError into a status-less ApiException
        reason = str(exc.reason or "").strip().splitlines()
        return KubeError(f"TLS with the Kubernetes API failed while trying to {what}: "
                         f"{reason[-1] if reason else 'SSLError'}; check ca_file")
    message = _status_message(exc.body) or str(exc.reason or "")
    if status == 401:
        return KubeError(f"401 Unauthorized while trying to {what}: the API server refused the "
                         "token (expired, revoked or unknown); renew the credentials", status)
    if status == 403:
        m = _FORBIDDEN.search(message)
        if m:
            group = f"{m['group']}/" if m["group"] else ""
            where = f" in namespace {m['ns']}" if m["ns"] else " cluster-wide"
            return KubeError(f"403 Forbidden: the control plane may not {m['verb']} "
                             f"{group}{m['resource']}{where}; {RBAC_HINT}", status)
        return KubeError(f"403 Forbidden while trying to {what}: {message}; {RBAC_HINT}",
                         status)
    if status == 404:
        return KubeError(f"404 Not Found while trying to {what}: {message}", status)
    return KubeError(f"{status} {exc.reason} while trying to {what}: {message}", status)


def _status_message(body: Any) -> str:
    if not body:
        return ""
    try:
        doc = json.loads(body)
    except (TypeError, ValueError):
        return _first_line(body)
    return str(doc.get("message", "")) if isinstance(doc, dict) else ""


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
