"""The demo fetches the Kafka jars itself when java is there: real Maven, the repository's
pom, progress lines, cached for the next run."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from controlplane.sandbox.kafka_broker import kafka_libs
from controlplane.sandbox.kafka_jars import fetch_kafka_jars

REAL_CACHE = Path(os.environ.get("CONTROLPLANE_CACHE") or Path.home() / ".cache" / "controlplane")


def test_jars_are_fetched_with_maven_into_the_cache_with_a_progress_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("mvn") is None:
        pytest.fail("mvn is not installed: run scripts/setup.d/30-kafka.sh")
    cache = tmp_path / "cache"
    cache.mkdir()
    # Maven's local repository from setup: the resolution is real, the download already done
    (cache / "m2").symlink_to(REAL_CACHE / "m2")
    monkeypatch.setenv("CONTROLPLANE_CACHE", str(cache))
    assert kafka_libs() is None
    lines: list[str] = []
    libs, why = fetch_kafka_jars(lines.append)
    dest = cache / "kafka" / "3.9.1" / "libs"
    assert (libs, why) == (str(dest), None)
    assert lines[0] == (f"demo: fetching the Kafka 3.9.1 jars from Maven Central into {dest} "
                        "(first run only)")
    jars = sorted(p.name for p in dest.glob("*.jar"))
    assert re.fullmatch(rf"demo: Kafka jars ready \({len(jars)} jars in \d+s\)", lines[-1])
    assert "kafka_2.13-3.9.1.jar" in jars and "kafka-tools-3.9.1.jar" in jars
    assert jars == sorted(p.name for p in (REAL_CACHE / "kafka" / "3.9.1" / "libs").glob("*.jar"))
    assert kafka_libs() == str(dest)  # the next demo finds them at once


def test_without_maven_the_demo_says_how_to_get_the_jars(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROLPLANE_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    lines: list[str] = []
    assert fetch_kafka_jars(lines.append) == (
        None, "no Kafka jars and no Maven to fetch them (apt-get install maven, or run "
              "scripts/setup.d/30-kafka.sh)")
    assert lines == []
