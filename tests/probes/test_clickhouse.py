"""The clickhouse probe against a real ClickHouse 18.16 (Debian) over HTTP and HTTPS."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.probes.clickhouse import ClickHouseCheckConfig, ClickHouseProbe
from controlplane.results import Result, Status
from tests.services.certs import CertFactory
from tests.services.clickhouse import PASSWORD, USER, ClickHouseServer
from tests.services.common import free_port

pytestmark = pytest.mark.clickhouse


@pytest.fixture(scope="module")
def voice(clickhouse: ClickHouseServer) -> Iterator[ClickHouseServer]:
    """Databases `voice` and `analytics` as on ClickHouse Cloud, with two event tables."""
    clickhouse.query("CREATE DATABASE IF NOT EXISTS voice")
    clickhouse.query("CREATE DATABASE IF NOT EXISTS analytics")
    clickhouse.query("CREATE TABLE IF NOT EXISTS voice.calls (ts DateTime, id UInt64) "
                     "ENGINE = MergeTree ORDER BY ts")
    clickhouse.query("CREATE TABLE IF NOT EXISTS analytics.daily (day Date, n UInt64) "
                     "ENGINE = MergeTree ORDER BY day")
    yield clickhouse
    clickhouse.query("DROP DATABASE voice")
    clickhouse.query("DROP DATABASE analytics")


def probe(ch: ClickHouseServer, **fields: Any) -> Result:
    return ClickHouseProbe(config(ch, **fields)).execute()


def config(ch: ClickHouseServer, **fields: Any) -> ClickHouseCheckConfig:
    base: dict[str, Any] = {"id": "ch-test", "url": ch.https_url, "user": USER,
                            "password": PASSWORD, "ca_file": str(ch.ca_file), "timeout": 5}
    return ClickHouseCheckConfig(**{**base, **fields})


def steps(result: Result) -> dict[str, Status]:
    return {s.name: s.status for s in result.steps}


def insert_call(ch: ClickHouseServer, seconds_ago: int) -> None:
    ch.query(f"INSERT INTO voice.calls SELECT now() - {seconds_ago}, rand64()")


def test_healthy_server_with_schema_is_ok_over_https(voice: ClickHouseServer) -> None:
    result = probe(voice, databases=["voice", "analytics"],
                   tables=["voice.calls", "analytics.daily"])
    assert result.status == Status.OK, result.message
    assert result.message.startswith(f"{voice.https_url}: ClickHouse 18.16.1, SELECT 1 in ")
    assert steps(result) == {"ping": Status.OK, "select 1": Status.OK, "schema": Status.OK}
    assert result.details["version"] == "18.16.1"


def test_missing_database_and_table_fail_naming_them(voice: ClickHouseServer) -> None:
    result = probe(voice, databases=["voice", "billing"], tables=["voice.turns"])
    assert result.status == Status.FAILING
    assert result.message == "missing: database billing, table voice.turns"


def test_stalled_ingest_fails_freshness_then_recovers(voice: ClickHouseServer) -> None:
    voice.query("TRUNCATE TABLE voice.calls")
    insert_call(voice, 3 * 3600)
    rule = {"table": "voice.calls", "column": "ts", "max_age": "15m"}
    result = probe(voice, freshness=[rule])
    assert result.status == Status.FAILING
    assert result.message == "voice.calls: newest ts is 3.0h old, over the bound of 15m"
    age = result.metrics["freshness_age_s:voice.calls.ts"]
    assert age is not None and 10800 <= age < 10860
    insert_call(voice, 5)
    result = probe(voice, freshness=[rule])
    assert result.status == Status.OK
    age = result.metrics["freshness_age_s:voice.calls.ts"]
    assert age is not None and 4 <= age < 60


def test_empty_table_fails_freshness(voice: ClickHouseServer) -> None:
    result = probe(voice, freshness=[{"table": "analytics.daily", "column": "day",
                                      "max_age": "2d"}])
    assert result.status == Status.FAILING
    assert result.message == "analytics.daily has no rows (freshness of day cannot be judged)"


def test_table_that_stops_growing_is_degraded_on_the_next_run(voice: ClickHouseServer) -> None:
    p = ClickHouseProbe(config(voice, growth=[{"table": "voice.calls", "min_rows": 2}]))
    first = p.execute()
    assert first.status == Status.OK
    assert first.steps[-1].message.endswith(" rows (first run: growth not judged)")
    insert_call(voice, 0)
    insert_call(voice, 0)
    assert p.execute().status == Status.OK
    insert_call(voice, 0)
    third = p.execute()
    assert third.status == Status.DEGRADED
    assert third.message == ("voice.calls grew by 1 rows since the last run, expected at "
                             "least 2")


def test_wrong_password_fails_without_showing_it(voice: ClickHouseServer) -> None:
    result = probe(voice, password="hunter2-wrong")
    assert result.status == Status.FAILING
    assert result.message == (f"{voice.https_url}: authentication failed for user "
                              f"{USER!r} (wrong user or password)")
    assert "hunter2" not in result.model_dump_json()
    assert steps(result) == {"ping": Status.OK, "select 1": Status.FAILING}


def test_query_error_is_reported_with_the_server_text(voice: ClickHouseServer) -> None:
    result = probe(voice, freshness=[{"table": "voice.nope", "column": "ts", "max_age": "1m"}])
    assert result.status == Status.FAILING
    assert result.message == (f"{voice.https_url}: freshness voice.nope.ts failed: HTTP 404: "
                              "Code: 60: Table voice.nope doesn't exist.")


def test_plain_http_is_ok(voice: ClickHouseServer) -> None:
    assert probe(voice, url=voice.url, ca_file=None).status == Status.OK


def test_untrusted_certificate_fails(voice: ClickHouseServer, certs: CertFactory) -> None:
    result = probe(voice, ca_file=str(certs.self_signed().ca_file))
    assert result.status == Status.FAILING
    assert result.message == (f"{voice.https_url}: TLS certificate not trusted "
                              "(certificate verify failed)")


def test_server_down_fails(voice: ClickHouseServer) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = probe(voice, url=url)
    assert result.status == Status.FAILING
    assert result.message == f"{url}: connection refused"


def test_unresolvable_host_fails(voice: ClickHouseServer) -> None:
    result = probe(voice, url="https://no-such-ch.invalid:8443")
    assert result.status == Status.FAILING
    assert result.message == "https://no-such-ch.invalid:8443: cannot resolve the host"


def test_silent_server_is_an_error_within_the_timeout(voice: ClickHouseServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        result = probe(voice, url=url, timeout=2)
    assert time.monotonic() - t0 < 5
    assert result.status == Status.ERROR
    assert result.message == f"{url}: no answer within 2s (ping)"


def test_slow_query_is_an_error_not_a_hang(voice: ClickHouseServer) -> None:
    # the filter makes the server evaluate sleep(3) (an unused column would be dropped)
    voice.query("CREATE VIEW IF NOT EXISTS voice.slow AS SELECT now() AS ts FROM system.one "
                "WHERE sleep(3) = 0")
    t0 = time.monotonic()
    result = probe(voice, timeout=2,
                   freshness=[{"table": "voice.slow", "column": "ts", "max_age": "1m"}])
    assert time.monotonic() - t0 < 4
    assert result.status == Status.ERROR
    assert result.message == f"{voice.https_url}: no answer within 2s (freshness voice.slow.ts)"
