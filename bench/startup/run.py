"""Start-up benchmark: `controlplane --help` and `controlplane smoke` to the first probe.

    python -m bench.startup.run [--runs 15] [--root DIR] [--write]

``--help``: wall time of the whole process. Smoke: from spawning `controlplane smoke --env
bench` to the moment a loopback HTTP server receives the first probe's request, with the
repository's real checks/*.yaml loaded too (every kind's config model is validated, as a
deploy pipeline's smoke run validates the whole config); also the time to exit. Each
figure is the median (and worst) of ``--runs`` runs after two untimed warm-up runs, so the
page cache is warm and the bytecode written, as for an installed package. ``--root``
measures another checkout (e.g. an export of an older commit, for a before/after figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TARGET_S = 0.5


class FirstProbe:
    """A loopback HTTP server that notes when each request arrives (monotonic clock)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        seen = self.arrivals

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(time.monotonic())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def write_config(directory: Path, root: Path, url: str) -> Path:
    main = yaml.safe_load((root / "controlplane.yaml").read_text())
    main["environments"]["bench"] = {"label": "Bench", "hosts": {"voice360": "127.0.0.1"}}
    main["check_files"] = [str(root / "checks" / "*.yaml")]
    main["store"] = {"dsn": f"sqlite:///{directory / 'unused.db'}"}
    main["checks"] = [{"id": "http-bench", "kind": "http", "env": "bench", "url": url}]
    path = directory / "controlplane.yaml"
    path.write_text(yaml.safe_dump(main, sort_keys=False))
    return path


def timed(cmd: list[str], env: dict[str, str],
          server: FirstProbe | None) -> tuple[float, float, float]:
    """(seconds to the first probe or nan, seconds to exit, CPU seconds of the process)."""
    before = len(server.arrivals) if server else 0
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    t_exit = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    first = server.arrivals[before] - t0 if server and len(server.arrivals) > before \
        else float("nan")
    return first, t_exit, cpu


def measure(root: Path, runs: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    # Installed code has bytecode (pip, the image's compileall); with this variable set (as
    # on these machines) every run would compile the sources again. The warm-ups write it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    server = FirstProbe()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), root, server.url)
        help_cmd = [sys.executable, "-m", "controlplane", "--help"]
        smoke_cmd = [sys.executable, "-m", "controlplane", "smoke", "--config", str(config),
                     "--env", "bench"]
        for _ in range(2):
            timed(help_cmd, env, None)
            timed(smoke_cmd, env, server)
        out: dict[str, list[float]] = {k: [] for k in
                                       ("help", "help_cpu", "first_probe", "smoke_exit",
                                        "smoke_cpu")}
        for _ in range(runs):
            _, t_help, cpu_help = timed(help_cmd, env, None)
            first, t_exit, cpu = timed(smoke_cmd, env, server)
            for key, value in (("help", t_help), ("help_cpu", cpu_help), ("first_probe", first),
                               ("smoke_exit", t_exit), ("smoke_cpu", cpu)):
                out[key].append(value)
    return out


def row(name: str, values: list[float]) -> str:
    med, worst = statistics.median(values), max(values)
    return (f"| {name} | {med * 1000:.0f} ms | {worst * 1000:.0f} ms | "
            f"{'yes' if med <= TARGET_S else 'no'} |")


def section(results: dict[str, Any], runs: int, load: float, command: str) -> str:
    lines = [
        "## startup", "",
        f"Machine: {os.cpu_count()} cores, Linux {platform.release()}, Python "
        f"{platform.python_version()}; 1-minute load average {load:.1f} when the run "
        f"started. Run {time.strftime('%Y-%m-%d')} with `{command}`: median and worst of "
        f"{runs} runs after two warm-up runs. Target: <= {TARGET_S} s to the first probe.", "",
        "| measure | median | worst | median <= 0.5 s |", "|---|---|---|---|",
        row("`controlplane --help` (whole process)", results["help"]),
        row("`controlplane smoke` to the first probe's request", results["first_probe"]),
        row("`controlplane smoke` to exit (one loopback check)", results["smoke_exit"]),
        row("CPU time of `controlplane --help` (user + sys)", results["help_cpu"]),
        row("CPU time of `controlplane smoke`, start to exit (user + sys)",
            results["smoke_cpu"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="checkout to measure (default: this one)")
    parser.add_argument("--write", action="store_true", help="print the RESULTS.md section")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = measure(args.root.resolve(), args.runs)
    if args.write:
        print(section(results, args.runs, load, "python -m bench.startup.run "
                      + " ".join(sys.argv[1:])))
    else:
        print(json.dumps({k: [round(v, 4) for v in vs] for k, vs in results.items()}))


if __name__ == "__main__":
    main()
