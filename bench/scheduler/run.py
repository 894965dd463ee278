"""Scheduler benchmark: N HTTP checks at 10 s intervals for 60 s against a local server.

Reports achieved checks/s, p50/p99 start delay (actual - scheduled start), CPU % and peak
RSS of the control plane process, for 1,000 and 10,000 checks per minute.

    python -m bench.scheduler.run [--duration 60] [--rates 1000,10000] [--write]

Each rate runs in its own child process so peak RSS is measured per scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INTERVAL_S = 10.0


def scenario(rate_per_min: int, duration: float, url: str) -> dict[str, float]:
    """Runs inside the child: build a runtime with rate*interval/60 checks and measure."""
    from controlplane.app import build_runtime
    from controlplane.config import ControlPlaneConfig, EnvironmentConfig, StoreConfig
    from controlplane.probes import probe_class

    n = round(rate_per_min * INTERVAL_S / 60)
    model = probe_class("http").config_model
    checks = [model.model_validate({"id": f"bench-{i}", "kind": "http", "env": "dev",
                                    "url": url, "interval": INTERVAL_S, "timeout": 5})
              for i in range(n)]
    tmp = tempfile.mkdtemp()
    cfg = ControlPlaneConfig(environments={"dev": EnvironmentConfig()},
                             store=StoreConfig(dsn=f"sqlite:///{tmp}/bench.db"), checks=checks)
    rt = build_runtime(cfg)
    runs = 0

    def count(*_: object) -> None:
        nonlocal runs
        runs += 1

    rt.pipeline.on_result(count)
    delays: list[float] = []
    observe = rt.scheduler.on_start_delay

    def record(delay: float) -> None:
        delays.append(delay)
        if observe is not None:
            observe(delay)

    rt.scheduler.on_start_delay = record
    cpu0, t0 = time.process_time(), time.monotonic()
    rt.start()
    time.sleep(duration)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    rt.stop(10)
    delays.sort()
    return {
        "checks": n, "rate_per_min": rate_per_min, "duration_s": round(elapsed, 1),
        "runs": runs, "checks_per_s": round(runs / elapsed, 1),
        "p50_delay_ms": round(_pct(delays, 0.50) * 1000, 1),
        "p99_delay_ms": round(_pct(delays, 0.99) * 1000, 1),
        "cpu_pct": round(cpu / elapsed * 100, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--rates", default="1000,10000")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(scenario(args.child, args.duration, args.url)))
        return 0
    port = 18000 + os.getpid() % 1000
    with tempfile.TemporaryDirectory() as docroot:
        Path(docroot, "index.html").write_text("ok\n")
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                                   "127.0.0.1", "--directory", docroot],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        rows = []
        try:
            for rate in [int(r) for r in args.rates.split(",")]:
                out = subprocess.run(
                    [sys.executable, "-m", "bench.scheduler.run", "--child", str(rate),
                     "--duration", str(args.duration), "--url",
                     f"http://127.0.0.1:{port}/index.html"],
                    cwd=ROOT, capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
        finally:
            server.terminate()
    if args.write:
        write_results(rows)
    return 0


def write_results(rows: list[dict[str, float]]) -> None:
    head = ("| checks/min target | checks | achieved checks/s | p50 start delay | "
            "p99 start delay | CPU % | peak RSS |\n|---|---|---|---|---|---|---|\n")
    lines = "".join(
        f"| {r['rate_per_min']:,} | {r['checks']} | {r['checks_per_s']} | "
        f"{r['p50_delay_ms']} ms | {r['p99_delay_ms']} ms | {r['cpu_pct']} | "
        f"{r['peak_rss_mb']} MB |\n" for r in rows)
    section = (f"## scheduler\n\nMachine: {machine()}. Run {time.strftime('%Y-%m-%d')} with "
               f"`python -m bench.scheduler.run --write` (HTTP checks every 10 s against a "
               f"local `python -m http.server`, 60 s per rate, SQLite store).\n\n"
               + head + lines + NOTES)
    replace_section("scheduler", section)


NOTES = """
Target: 10,000 checks/min on 2 cores with p99 start delay <= 250 ms and RSS <= 250 MB.
Start delay is the time from the trigger's scheduled run time (jitter included) to the
moment a pool thread starts the run. Achieved checks/s counts every run in the 60 s window,
including the first interval, over which first runs are spread on purpose, so it sits a few
per cent under the nominal rate. An earlier version spread first runs over only 5 s, so
1,667 checks on a 10 s interval fired in 5 s bursts forever after (333/s, then idle): p99
was 1.9 s. Spreading first runs over the whole interval (at most 60 s) fixed it. The
machine was shared with other test runs during the measurement.
"""


def replace_section(name: str, section: str) -> None:
    """Replace (or append) the `## name` section of bench/RESULTS.md."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    marker = f"## {name}\n"
    if marker in text:
        start = text.index(marker)
        nxt = text.find("\n## ", start + len(marker))
        end = len(text) if nxt == -1 else nxt + 1
        text = text[:start] + section + ("\n" if nxt != -1 else "") + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
