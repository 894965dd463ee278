"""A real Kubernetes control plane on loopback, for tests, benchmarks and the demo.

kine (SQLite) stores, kube-apiserver serves (static tokens, RBAC, a generated service-account
key). :meth:`KubeCluster.start_workers` adds kube-controller-manager, kube-scheduler and kwok
with three fake nodes in zones 1, 2 and 3, so Deployments get ReplicaSets and their pods are
scheduled and become Ready. The binaries come from scripts/setup.d/50-kubernetes.sh.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from controlplane.k8s.pki import ClusterPki, make_pki

log = logging.getLogger(__name__)

KUBE_VERSION = "v1.34.2"
SETUP_HINT = "run scripts/setup.d/50-kubernetes.sh (scripts/test runs it)"
BINARIES = ("kine", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
            "kubectl")
STAGES = ("node-initialize.yaml", "node-heartbeat.yaml", "pod-ready.yaml", "pod-complete.yaml",
          "pod-delete.yaml")
ZONES = ("1", "2", "3")
ZONE_LABEL = "topology.kubernetes.io/zone"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"

# Static token users: name -> groups. ``controlplane`` is the product's own user: it gets
# no rights here; tests bind it to deploy/rbac so a missing permission fails a test. The
# controller-manager runs every controller under its own identity (no per-controller
# service-account credentials here), which the bootstrap RBAC does not cover: masters.
USERS: dict[str, tuple[str, ...]] = {
    "admin": ("system:masters",),
    "system:kube-controller-manager": ("system:masters",),
    "system:kube-scheduler": (),
    "kwok": ("system:masters",),
    "controlplane": (),
    "outsider": (),
}


def kube_dir() -> str:
    cache = os.environ.get("CONTROLPLANE_CACHE") or os.path.expanduser("~/.cache/controlplane")
    return os.path.join(cache, "kube", KUBE_VERSION)


def missing_binaries() -> list[str]:
    """What scripts/setup.d/50-kubernetes.sh has not built yet (empty when ready)."""
    bindir = os.path.join(kube_dir(), "bin")
    out = [b for b in BINARIES if not os.access(os.path.join(bindir, b), os.X_OK)]
    out += [f"kwok-stages/{s}" for s in STAGES
            if not os.path.exists(os.path.join(kube_dir(), "kwok-stages", s))]
    return out


class TestBedError(RuntimeError):
    """A test-bed process did not start; the message names its log file."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_file: str

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_file, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


@dataclass
class KubeCluster:
    """One cluster in ``workdir``; :meth:`start` brings up kine + kube-apiserver."""

    workdir: str
    bindir: str = field(default_factory=lambda: os.path.join(kube_dir(), "bin"))
    stagedir: str = field(default_factory=lambda: os.path.join(kube_dir(), "kwok-stages"))
    port: int = field(default_factory=_free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    pki: ClusterPki | None = None
    procs: list[_Proc] = field(default_factory=list)
    workers: bool = False
    die_with_parent: bool = False
    """SIGKILL every process of the cluster when the process that started it dies (the demo:
    a SIGKILLed demo leaves no orphans). Only for a cluster started from a thread that lives
    as long as the process: the signal follows the starting thread."""

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        assert self.pki is not None, "cluster not started"
        return self.pki.ca_file

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> KubeCluster:
        missing = missing_binaries()
        if missing:
            raise TestBedError(f"Kubernetes test-bed binaries missing ({', '.join(missing)}): "
                               f"{SETUP_HINT}")
        os.makedirs(self.workdir, exist_ok=True)
        self.pki = make_pki(os.path.join(self.workdir, "pki"))
        self.tokens = {user: secrets.token_urlsafe(24) for user in USERS}
        token_file = os.path.join(self.workdir, "pki", "tokens.csv")
        with open(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            for i, (user, groups) in enumerate(USERS.items()):
                fh.write(f'{self.tokens[user]},{user},uid-{i},"{",".join(groups)}"\n')
        kine_port = _free_port()
        kine_dir = os.path.join(self.workdir, "kine")
        os.makedirs(kine_dir, exist_ok=True)
        # kine binds 0.0.0.0:2379 and :8080 unless told otherwise.
        kine = self._spawn("kine", [
            "--endpoint", f"sqlite://{kine_dir}/state.db?_journal=WAL&cache=shared"
            "&_busy_timeout=30000",
            "--listen-address", f"127.0.0.1:{kine_port}", "--metrics-bind-address", "0"],
            cwd=kine_dir)
        self._wait(kine, lambda: _port_open(kine_port), 60)
        self._spawn("kube-apiserver", self._apiserver_args(kine_port, token_file))
        self.wait_ready()
        return self

    def _apiserver_args(self, kine_port: int, token_file: str) -> list[str]:
        pki = self.pki
        assert pki is not None
        return [
            f"--etcd-servers=http://127.0.0.1:{kine_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--tls-cert-file={pki.cert_file}", f"--tls-private-key-file={pki.key_file}",
            f"--client-ca-file={pki.ca_file}",
            f"--token-auth-file={token_file}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={pki.sa_pub_file}",
            f"--service-account-signing-key-file={pki.sa_key_file}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            # The API server starts before (and may run without) a controller-manager, whose
            # token controller this plugin waits for: pods here never mount a token anyway.
            "--disable-admission-plugins=ServiceAccount",
            "--enable-priority-and-fairness=false", "--profiling=false",
            # MutatingAdmissionPolicy (beta in 1.34, off by default): tests use one to alter
            # restored Secrets in flight, so a drill's hash comparison can be seen to fail.
            "--feature-gates=MutatingAdmissionPolicy=true",
            "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
            f"--cert-dir={os.path.join(self.workdir, 'pki')}",
        ]

    def start_workers(self) -> None:
        """Controller-manager, scheduler and kwok with three fake nodes (idempotent)."""
        if self.workers:
            return
        pki = self.pki
        assert pki is not None
        cm = self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.kubeconfig('system:kube-controller-manager')}",
            "--leader-elect=false", "--secure-port=0", "--bind-address=127.0.0.1",
            f"--service-account-private-key-file={pki.sa_key_file}",
            f"--root-ca-file={pki.ca_file}", "--use-service-account-credentials=false",
            "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10"])
        sched = self._spawn("kube-scheduler", [
            f"--kubeconfig={self.kubeconfig('system:kube-scheduler')}",
            "--leader-elect=false", "--secure-port=0", "--bind-address=127.0.0.1"])
        stages: list[str] = []
        for s in STAGES:
            stages += ["-c", os.path.join(self.stagedir, s)]
        kwok = self._spawn("kwok", [
            f"--kubeconfig={self.kubeconfig('kwok')}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            "--cidr=10.244.0.0/16", "--node-ip=10.240.0.1", *stages])
        self.workers = True
        self.create_nodes()
        for p in (cm, sched, kwok):
            if not p.alive():
                raise TestBedError(f"{p.name} exited at start; see {p.log_file}:\n{p.tail()}")
        self._wait(kwok, self._nodes_ready, 60)

    def stop(self) -> None:
        """SIGTERM to every process but kine at once, wait for each (kill after 20 s), then
        kine: an API server whose storage is gone drags out its own shutdown."""
        clients = [p for p in self.procs if p.name != "kine"]
        for p in clients:
            if p.alive():
                p.popen.send_signal(signal.SIGTERM)
        for p in reversed(clients):
            p.stop()
        for p in self.procs:
            if p.name == "kine":
                p.stop()
        self.procs.clear()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def proc(self, name: str) -> _Proc:
        return next(p for p in self.procs if p.name == name)

    # -- credentials --------------------------------------------------------------------

    def kubeconfig(self, user: str = "admin") -> str:
        """A kubeconfig file for one static-token user (JSON is valid kubeconfig YAML)."""
        path = os.path.join(self.workdir, f"kubeconfig-{user.replace(':', '_')}")
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "testbed",
            "clusters": [{"name": "testbed", "cluster": {"server": self.server,
                                                          "certificate-authority": self.ca_file}}],
            "users": [{"name": user, "user": {"token": self.tokens[user]}}],
            "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user}}],
        }
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            json.dump(doc, fh)
        return path

    def token_file(self, user: str) -> str:
        path = os.path.join(self.workdir, f"token-{user.replace(':', '_')}")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(self.tokens[user])
        return path

    def api_client(self, user: str = "admin") -> Any:
        """A ``kubernetes.client.ApiClient`` for ``user``."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = self.ca_file
        cfg.api_key = {"authorization": "Bearer " + self.tokens[user]}
        return client.ApiClient(cfg)

    # -- readiness ----------------------------------------------------------------------

    def wait_ready(self, timeout: float = 90) -> None:
        self._wait(self.proc("kube-apiserver"), self._readyz, timeout)

    def _readyz(self) -> bool:
        try:
            r = requests.get(f"{self.server}/readyz", verify=self.ca_file, timeout=2,
                             headers={"Authorization": f"Bearer {self.tokens['admin']}"})
        except requests.RequestException:
            return False
        return r.status_code == 200

    def create_nodes(self) -> None:
        from kubernetes import client

        api: Any = client.CoreV1Api(self.api_client())
        existing = {n.metadata.name for n in api.list_node().items}
        for zone in ZONES:
            name = f"kwok-node-{zone}"
            if name in existing:
                continue
            api.create_node(client.V1Node(metadata=client.V1ObjectMeta(
                name=name, annotations={KWOK_ANNOTATION: "fake"},
                labels={ZONE_LABEL: zone, "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux", "type": "kwok"}),
                status=client.V1NodeStatus(
                    allocatable={"cpu": "32", "memory": "128Gi", "pods": "250"},
                    capacity={"cpu": "32", "memory": "128Gi", "pods": "250"})))

    def _nodes_ready(self) -> bool:
        from kubernetes import client

        api: Any = client.CoreV1Api(self.api_client())
        nodes = api.list_node().items
        ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True"
                                         for c in (n.status.conditions or []))]
        return len(ready) >= len(ZONES)

    # -- processes ----------------------------------------------------------------------

    def _pdeath_prefix(self) -> list[str]:
        # setpriv sets PR_SET_PDEATHSIG right before exec; a preexec_fn would run in a
        # forked copy of a threaded process, where it can deadlock.
        setpriv = shutil.which("setpriv") if self.die_with_parent else None
        return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []

    def _spawn(self, name: str, args: list[str], cwd: str | None = None) -> _Proc:
        log_file = os.path.join(self.workdir, f"{name}.log")
        with open(log_file, "ab") as out:
            popen = subprocess.Popen([*self._pdeath_prefix(), os.path.join(self.bindir, name),
                                      *args],
                                     stdout=out, stderr=subprocess.STDOUT, cwd=cwd or self.workdir,
                                     start_new_session=True)
        proc = _Proc(name, popen, log_file)
        self.procs.append(proc)
        log.info("test-bed process started name=%s pid=%d", name, popen.pid)
        return proc

    @staticmethod
    def _wait(proc: _Proc, ready: Any, timeout: float) -> None:
        """Poll ``ready()`` until true; the poll interval is a wait on the process itself,
        so a crash is seen at once."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except Exception as exc:  # the API answers errors while it comes up
                log.debug("test bed not ready yet what=%s error=%s", proc.name, exc)
            try:
                proc.popen.wait(0.1)
                raise TestBedError(f"{proc.name} exited with {proc.popen.returncode}; see "
                                   f"{proc.log_file}:\n{proc.tail()}")
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise TestBedError(f"{proc.name} not ready after {timeout:.0f} s; see "
                                   f"{proc.log_file}:\n{proc.tail()}")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
