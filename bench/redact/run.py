"""Redaction cost on the probe result path: the table of credential shapes against the
single key=value expression it replaced.

Measures microseconds per call for typical result texts (clean and with a credential) and
the time to redact a result's details with 10,000 rows (the walk in probes/base.py).
Writes `## redact` in bench/RESULTS.md.

    python -m bench.redact.run [--write]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.scheduler.run import machine, replace_section  # noqa: E402
from controlplane.probes.base import _redacted  # noqa: E402
from controlplane.redact import redact  # noqa: E402

# The rule redaction used before this table (controlplane/logs.py at 01052a7).
_OLD_SECRET = re.compile(
    r"(?i)((?:token|password|passwd|secret|api[_-]?key|authorization|sig|signature)"
    r"[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?)([^\s\"'&,;]+)")
_OLD_DSN = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


def old_redact(text: str) -> str:
    return _OLD_SECRET.sub(r"\1***", _OLD_DSN.sub(r"\1***\3", text))


TEXTS = {
    "short name": "orders-topic",
    "clean message": "connection refused to 10.0.0.1:9092 after 3 retries",
    "HTTP message": "GET https://bic-sky.halo360.ai/health answered 503 in 0.412 s "
                    "(expected 200); body: upstream connect error or disconnect/reset",
    "with a password": "login with password=hunter2 failed for task 3",
    "with a DSN": "cannot connect postgresql://svc:hunter2@db.internal:5432/app: timeout",
    "10 kB clean": "partition orders-7 lag 12 at 2026-11-26T12:00:00Z, broker ok; " * 160,
}


def per_call_us(fn: Callable[[str], str], text: str) -> float:
    timer = timeit.Timer(lambda: fn(text))
    n, _ = timer.autorange()
    return min(timer.repeat(5, n)) / n * 1e6


def details_ms() -> float:
    rows = [{"group": "g1", "topic": "orders", "partition": i, "committed": 1000 + i,
             "end_offset": 1010 + i, "lag": 10, "note": f"broker 10.0.0.{i % 3}:9092"}
            for i in range(10_000)]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        _redacted({"partitions": rows})
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    rows = [(name, per_call_us(old_redact, text), per_call_us(redact, text))
            for name, text in TEXTS.items()]
    walk = details_ms()
    for name, old, new in rows:
        print(f"{name:18} old {old:8.2f} us  new {new:8.2f} us")
    print(f"10,000 detail rows: {walk:.1f} ms")
    if args.write:
        table = "".join(f"| {name} | {old:.1f} µs | {new:.1f} µs |\n" for name, old, new in rows)
        replace_section("redact", (
            f"## redact\n\nMachine: {machine()}. Run {time.strftime('%Y-%m-%d')} with "
            "`python -m bench.redact.run --write`. Best of 5 repeats per text; *before* is the "
            "two expressions redaction used until the table of credential shapes "
            "(controlplane/redact.py) replaced them, *after* the table (19 rules, each run "
            "only when one of its hint substrings occurs).\n\n"
            "| text | before | after |\n|---|---|---|\n" + table +
            f"\nRedacting the details of a result with 10,000 rows (each with an "
            f"`IP:port` string, the walk in probes/base.py): {walk:.1f} ms. kafka_lag, "
            "whose rows hold only names and numbers, skips the walk. The machine was shared "
            "with other test runs: single figures vary by up to 2x between runs; the "
            "ordering does not.\n"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
