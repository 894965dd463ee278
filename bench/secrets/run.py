"""Secrets backup vs a bare LIST, and a restore dry-run, on the test-bed API server.

    python -m bench.secrets.run [--secrets 2000] [--keys 10] [--write]

Starts kine + kube-apiserver (scripts/setup.d/50-kubernetes.sh builds them), creates the
Secrets, then in the same run: a bare LIST of them with the ``kubernetes`` client (its
models, as a script would), the backup end to end (list, serialise, age, local blob,
manifest, catalog), and a restore dry-run of every Secret into a namespace holding them
all. Backup and dry-run run in a child process each so their peak RSS is their own.
Targets (issue 11): backup >= 0.7x the LIST's speed, peak RSS <= 200 MB, dry-run <= 10 s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.scheduler.run import machine, replace_section

ROOT = Path(__file__).resolve().parents[2]


def fill(cluster: Any, ns: str, count: int, keys: int) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(cluster.api_client())
    core.create_namespace({"metadata": {"name": ns}})

    def make(i: int) -> None:
        data = {f"KEY_{k}": base64.b64encode(secrets.token_bytes(48)).decode()
                for k in range(keys)}
        core.create_namespaced_secret(ns, {"metadata": {"name": f"s-{i:05d}"}, "data": data})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(count)))


def child(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: one measured step. Imports and the store (open for the
    life of a running control plane) come before the clock starts."""
    from kubernetes import client

    from controlplane.backups.blob import LocalBlobStore
    from controlplane.backups.k8s_secrets import SecretsBackup, SecretsBackupConfig, load
    from controlplane.k8s import restore
    from controlplane.k8s.client import ClusterConnection, Kube, api_client
    from controlplane.store import Store

    conn = ClusterConnection(api_server=spec["server"], token_file=spec["token_file"],
                             ca_file=spec["ca_file"])
    store, blobs = Store(spec["store"]), LocalBlobStore(spec["blobs"])
    t0 = time.monotonic()
    if mode == "list":
        n = len(client.CoreV1Api(api_client(conn)).list_namespaced_secret(spec["ns"]).items)
    elif mode == "backup":
        cfg = SecretsBackupConfig(cluster=conn, namespaces=[spec["ns"]],
                                  recipients=[spec["recipient"]], timeout=120)
        result = SecretsBackup(cfg, store, blobs).run()
        assert result.status.value == "ok", result.message
        n = int(result.metrics["secrets"] or 0)
    else:
        _, items = load(store, blobs, spec["backup_id"], spec["key"])
        with Kube(conn, 120) as kube:
            n = len(restore.plan(kube, items, {}, overwrite=True))
    seconds = time.monotonic() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "items": n, "seconds": seconds, "rss_mb": rss_mb}


def measure(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.secrets.run", "--child", mode,
                          json.dumps(spec)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return dict(json.loads(out.stdout.splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--secrets", type=int, default=2000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "SPEC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], json.loads(args.child[1]))))
        return 0
    from pyrage import x25519

    from controlplane.k8s.testbed import KubeCluster
    from controlplane.store import Store

    work = tempfile.mkdtemp(prefix="cp-bench-secrets-")
    cluster = KubeCluster(os.path.join(work, "kube")).start()
    try:
        ident = x25519.Identity.generate()
        key = Path(work, "key.txt")
        key.write_text(f"{ident}\n")
        t = time.monotonic()
        fill(cluster, "bench", args.secrets, args.keys)
        print(f"created {args.secrets} secrets x {args.keys} keys in "
              f"{time.monotonic() - t:.1f}s", file=sys.stderr)
        store = f"sqlite:///{work}/cp.db"
        Store(store).close()
        spec = {"server": cluster.server, "token_file": cluster.token_file("admin"),
                "ca_file": cluster.ca_file, "ns": "bench", "recipient": str(ident.to_public()),
                "store": store, "blobs": os.path.join(work, "blobs"), "key": str(key)}
        rows = [measure("list", spec), measure("backup", spec)]
        from controlplane.backups import catalog

        with Store(store).session() as s:
            spec["backup_id"] = catalog.backups(s, "kubernetes-secrets", limit=1)[0].id
        rows.append(measure("dry-run", spec))
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        print(f"{r['mode']:8} {r['items']:6d} items  {r['seconds']:6.2f}s  "
              f"{r['rss_mb']:6.1f} MB", file=sys.stderr)
    if args.write:
        write_results(rows, args.secrets, args.keys)
    return 0


def write_results(rows: list[dict[str, Any]], count: int, keys: int) -> None:
    by = {r["mode"]: r for r in rows}
    ratio = by["list"]["seconds"] / by["backup"]["seconds"]
    load = os.getloadavg()[0]
    names = {"list": "bare LIST (`kubernetes` client, models)",
             "backup": "backup end to end (LIST, age, local blob, manifest, catalog)",
             "dry-run": "restore dry-run of all (download, verify every hash, LIST the target)"}
    table = "\n".join(f"| {names[r['mode']]} | {r['items']} | {r['seconds']:.2f} | "
                      f"{r['rss_mb']:.0f} MB |" for r in rows)
    section = f"""## secrets

Machine: {machine()}; 1-minute load average {load:.1f} at the end of the run (shared
machine). Run {time.strftime('%Y-%m-%d')} with `python -m bench.secrets.run --write`:
{count} Secrets x {keys} keys (48 random bytes each) in one namespace of the test-bed
kube-apiserver v1.34.2 over kine/SQLite on loopback; each step in its own process.

| step | Secrets | seconds | peak RSS |
|---|---|---|---|
{table}

Backup speed relative to the bare LIST: {ratio:.2f}x (target >= 0.7x); backup peak RSS
{by['backup']['rss_mb']:.0f} MB (target <= 200 MB); dry-run {by['dry-run']['seconds']:.1f} s
(target <= 10 s). The backup reads the LIST as plain JSON instead of the client's model
objects, which is why it can be faster than the bare LIST it is compared with.
"""
    replace_section("secrets", section)


if __name__ == "__main__":
    raise SystemExit(main())
