"""The demo's Kafka jars, fetched on first use: the same Maven resolution as
scripts/setup.d/30-kafka.sh (scripts/kafka/pom.xml, `dependency:copy-dependencies`, the
local repository in $CONTROLPLANE_CACHE/m2), so a newcomer's `controlplane demo` shows the
Kafka checks without reading the docs. Cached: the next run finds the jars at once."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

POM = Path(__file__).resolve().parents[2] / "scripts" / "kafka" / "pom.xml"
PROGRESS_EVERY_S = 10.0


def cache_dir() -> Path:
    return Path(os.environ.get("CONTROLPLANE_CACHE") or Path.home() / ".cache" / "controlplane")


def fetch_kafka_jars(say: Callable[[str], None],
                     timeout: float = 900.0) -> tuple[str | None, str | None]:
    """(jar directory, None) once the jars are there, or (None, why not)."""
    if not POM.is_file():
        return None, "no Kafka jars, and no scripts/kafka/pom.xml to fetch them with (run " \
                     "the demo from a checkout, or scripts/setup.d/30-kafka.sh)"
    mvn = shutil.which("mvn")
    if mvn is None:
        return None, "no Kafka jars and no Maven to fetch them (apt-get install maven, or " \
                     "run scripts/setup.d/30-kafka.sh)"
    match = re.search(r"<kafka.version>(.+?)</kafka.version>", POM.read_text())
    version = match.group(1) if match else "unknown"
    dest = cache_dir() / "kafka" / version / "libs"
    dest.mkdir(parents=True, exist_ok=True)
    say(f"demo: fetching the Kafka {version} jars from Maven Central into {dest} "
        "(first run only)")
    t0 = time.monotonic()
    done = threading.Event()
    ticker = threading.Thread(target=_progress, args=(say, dest, done, t0), daemon=True)
    ticker.start()
    try:
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), f"-Dmaven.repo.local={cache_dir() / 'm2'}",
             "-Dstyle.color=never", "dependency:copy-dependencies",
             f"-DoutputDirectory={dest}", "-DincludeScope=runtime"],
            capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"fetching the Kafka jars took over {timeout:g}s; try again later"
    finally:
        done.set()
        ticker.join()
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        log.warning("kafka jar fetch failed rc=%d output=%r", proc.returncode, tail[0])
        return None, f"fetching the Kafka jars failed (mvn exited {proc.returncode}: {tail[0]})"
    (dest / ".complete").touch()
    jars = len(list(dest.glob("*.jar")))
    say(f"demo: Kafka jars ready ({jars} jars in {time.monotonic() - t0:.0f}s)")
    return str(dest), None


def _progress(say: Callable[[str], None], dest: Path, done: threading.Event,
              t0: float) -> None:
    while not done.wait(PROGRESS_EVERY_S):
        say(f"demo: still fetching the Kafka jars ({len(list(dest.glob('*.jar')))} so far, "
            f"{time.monotonic() - t0:.0f}s)")
