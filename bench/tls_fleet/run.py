"""TLS fleet: 500 loopback endpoints probed every 10 s by the control plane's scheduler
(`controlplane run`, 500 tls checks) and by blackbox_exporter (its tcp prober with TLS,
each target scraped every 10 s through /probe), side by side in one run.

    python -m bench.tls_fleet.run --write

Reports CPU seconds per probe (each process's CPU time over the window / probes it
completed in the window), p99 probe duration, and whether both give the same verdict and
the same earliest expiry for every endpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.scheduler.run import machine, replace_section
from bench.tls_fleet.fleet import NAME, Endpoint, make_fleet, start_servers
from tests.services.blackbox import BlackboxExporter
from tests.services.common import ROOT, free_port

log = logging.getLogger(__name__)
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98] if len(xs) >= 2 else (xs[0] if xs else 0.0)


@dataclass
class Peer:
    """The driver that scrapes blackbox_exporter's /probe for every target every interval."""
    exporter: BlackboxExporter
    endpoints: list[Endpoint]
    interval: float
    done: int = 0
    durations: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, s)
    last: dict[int, dict[str, float]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        local = threading.local()
        lock = threading.Lock()

        def one(ep: Endpoint) -> None:
            session = getattr(local, "s", None) or requests.Session()
            local.s = session
            resp = session.get(f"{self.exporter.url}/probe", timeout=30, params={
                "target": f"127.0.0.1:{ep.port}", "module": "tls"})
            values = {s.name: s.value for f in text_string_to_metric_families(resp.text)
                      for s in f.samples if not s.labels}
            with lock:
                self.done += 1
                self.last[ep.index] = values
                self.durations.append((time.monotonic(),
                                       values.get("probe_duration_seconds", 0.0)))

        n = len(self.endpoints)
        start = time.monotonic()
        with ThreadPoolExecutor(64) as pool:
            k = 0
            while not self.stop.is_set():
                at = start + k * self.interval / n  # spread evenly, as a scraper does
                delay = at - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    break
                pool.submit(one, self.endpoints[k % n])
                k += 1


def our_config(directory: Path, endpoints: list[Endpoint], ca_file: Path,
               interval: int) -> Path:
    checks = [{"id": f"tls-fleet-{ep.index:03d}", "kind": "tls", "env": "production",
               "interval": f"{interval}s", "timeout": "10s", "target": f"127.0.0.1:{ep.port}",
               "servername": NAME, "ca_file": str(ca_file)} for ep in endpoints]
    doc = {"environments": {"production": {"label": "Production"}},
           "store": {"dsn": f"sqlite:///{directory / 'cp.db'}"},
           "web": {"host": "127.0.0.1", "port": free_port()}, "check_files": [],
           "incidents": {"enabled": False}, "checks": checks}
    path = directory / "controlplane.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def our_results(db: Path, since: datetime | None = None) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=30) as conn:
        return list(conn.execute(
            "SELECT check_id, status, started_at, duration_s, metrics FROM results"
            + (" WHERE started_at >= ?" if since else "") + " ORDER BY id",
            (since.strftime("%Y-%m-%d %H:%M:%S.%f"),) if since else ()))


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling ``pid`` for ``seconds`` (collapsed stacks, --idle off), if installed."""
    spy = shutil.which("py-spy") or os.environ.get("PY_SPY")
    if not spy:
        log.warning("py-spy not found (pip install py-spy, or set PY_SPY); no profile taken")
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", "200", "--threads", "--format", "raw", "--output",
                             str(out), "--nonblocking"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def run(n: int, interval: int, warmup: float, window: float,
        work: Path, profile: Path | None = None) -> dict[str, Any]:
    endpoints, ca_file = make_fleet(work / "certs", n)
    fleet = start_servers(endpoints, work)
    module = {"prober": "tcp", "timeout": "10s",
              "tcp": {"tls": True, "preferred_ip_protocol": "ip4",
                      "tls_config": {"ca_file": str(ca_file), "server_name": NAME}}}
    exporter = BlackboxExporter(work / "exporter", {"tls": module})
    exporter.start()
    assert exporter._proc is not None
    cfg = our_config(work, endpoints, ca_file, interval)
    with (work / "cp.log").open("wb") as out:
        ours = subprocess.Popen([sys.executable, "-m", "controlplane", "run", "--config",
                                 str(cfg)], cwd=ROOT, stdout=out, stderr=out,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    peer = Peer(exporter, endpoints, interval)
    driver = threading.Thread(target=peer.run, daemon=True)
    driver.start()
    try:
        time.sleep(warmup)
        load_start = Path("/proc/loadavg").read_text().split()[:3]
        t0, since = time.monotonic(), datetime.now(UTC)
        cpu0 = cpu_seconds(ours.pid), cpu_seconds(exporter._proc.pid)
        ours0, peer0 = len(our_results(work / "cp.db")), peer.done
        spy = start_profile(ours.pid, window, profile) if profile else None
        time.sleep(window)
        cpu1 = cpu_seconds(ours.pid), cpu_seconds(exporter._proc.pid)
        ours1, peer1 = len(our_results(work / "cp.db")), peer.done
        t1 = time.monotonic()
        load_end = Path("/proc/loadavg").read_text().split()[:3]
        if spy is not None:  # it has written the profile by now; it may linger on exit
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.terminate()
    finally:
        peer.stop.set()
        driver.join(timeout=60)
        ours.send_signal(signal.SIGTERM)
        try:
            ours.wait(timeout=60)
        except subprocess.TimeoutExpired:
            ours.kill()
        exporter.stop()
        fleet.kill()
    rows = our_results(work / "cp.db", since)
    latest: dict[str, tuple[Any, ...]] = {r[0]: r for r in our_results(work / "cp.db")}
    return {"n": n, "interval": interval, "window": t1 - t0, "load": (load_start, load_end),
            "ours_cpu": cpu1[0] - cpu0[0], "peer_cpu": cpu1[1] - cpu0[1],
            "ours_probes": ours1 - ours0, "peer_probes": peer1 - peer0,
            "ours_p99": p99([float(r[3]) for r in rows]),
            "peer_p99": p99([d for t, d in peer.durations if t0 <= t <= t1]),
            **compare(endpoints, latest, peer.last)}


def compare(endpoints: list[Endpoint], ours: dict[str, tuple[Any, ...]],
            theirs: dict[int, dict[str, float]]) -> dict[str, Any]:
    import json

    verdict_diff, expiry_diff, truth_diff = [], [], []
    for ep in endpoints:
        row = ours.get(f"tls-fleet-{ep.index:03d}")
        peer = theirs.get(ep.index)
        if row is None or peer is None:
            verdict_diff.append(f"{ep.index} ({ep.kind}): not probed by both")
            continue
        our_up = row[1] in ("ok", "degraded")
        peer_up = peer.get("probe_success") == 1.0
        metrics = json.loads(row[4]) if isinstance(row[4], str) else row[4]
        if our_up != peer_up:
            verdict_diff.append(f"{ep.index} ({ep.kind}): ours {row[1]}, theirs "
                                f"probe_success={peer.get('probe_success')}")
        if our_up != ep.up:
            truth_diff.append(f"{ep.index} ({ep.kind}): ours {row[1]}")
        if our_up and peer_up:
            mine = metrics.get("earliest_not_after")
            peers = peer.get("probe_ssl_earliest_cert_expiry")
            if mine is None or peers is None or int(mine) != int(peers):
                expiry_diff.append(f"{ep.index}: ours {mine}, theirs {peers}")
    kinds = Counter(e.kind for e in endpoints)
    return {"verdict_diff": verdict_diff, "expiry_diff": expiry_diff, "truth_diff": truth_diff,
            "kinds": ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items())}


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    ours_cpp = r["ours_cpu"] / max(r["ours_probes"], 1)
    peer_cpp = r["peer_cpu"] / max(r["peer_probes"], 1)
    ratio = ours_cpp / peer_cpp if peer_cpp else float("inf")
    same = not r["verdict_diff"] and not r["expiry_diff"]
    lines = [
        "## tls_fleet", "",
        f"Machine: {machine()}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with "
        f"`python -m bench.tls_fleet.run --endpoints {r['n']} --window {args.window:g} "
        "--write`. "
        f"{r['n']} TLS endpoints on loopback (one asyncio process, a certificate each: "
        f"{r['kinds']}), probed every "
        f"{r['interval']} s by `controlplane run` ({r['n']} tls checks, SQLite store, incidents "
        "off) and by blackbox_exporter (tcp prober with TLS, /probe for each target every "
        f"{r['interval']} s, 64 scrapes in flight at most). Measured over "
        f"{r['window']:.0f} s after a {args.warmup:g} s warm-up. Load average (1, 5, 15 min) "
        f"{' '.join(r['load'][0])} at the start, {' '.join(r['load'][1])} at the end "
        "(shared machine).", "",
        "| measure | controlplane run | blackbox_exporter |", "|---|---|---|",
        f"| probes completed in the window | {r['ours_probes']} | {r['peer_probes']} |",
        f"| process CPU time in the window | {r['ours_cpu']:.1f} s | {r['peer_cpu']:.1f} s |",
        f"| CPU seconds per probe | {ours_cpp * 1000:.2f} ms | {peer_cpp * 1000:.2f} ms |",
        f"| p99 probe duration | {r['ours_p99'] * 1000:.1f} ms | {r['peer_p99'] * 1000:.1f} ms |",
        "", f"CPU per probe ratio (ours / theirs): {ratio:.2f}; target <= 1.5: "
        f"{'met' if ratio <= 1.5 else 'NOT met'}. Our process does more per probe than the "
        "exporter: it stores each result, updates metrics and evaluates state.",
        f"Verdicts (up = handshake and chain verified) and earliest expiry: "
        f"{'identical for all ' + str(r['n']) if same else 'DIFFERENT'}"
        f" ({len(r['verdict_diff'])} verdict and {len(r['expiry_diff'])} expiry differences; "
        f"{len(r['truth_diff'])} of ours differ from the fleet's known answer).",
    ]
    for what in ("verdict_diff", "expiry_diff", "truth_diff"):
        if r[what]:
            lines.append(f"{what}: " + "; ".join(r[what][:10]))
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoints", type=int, default=500)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--window", type=float, default=120.0)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--profile", type=Path, help="write py-spy's collapsed stacks of "
                    "`controlplane run` over the window here (slows it while sampling)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    with tempfile.TemporaryDirectory(prefix="cp-tls-fleet-") as tmp:
        r = run(args.endpoints, args.interval, args.warmup, args.window, Path(tmp),
                args.profile)
    text = report(r, args)
    print(text)
    if args.write:
        replace_section("tls_fleet", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
