"""The http check against real loopback HTTP(S) servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from controlplane.probes.http import HttpCheckConfig, HttpProbe
from controlplane.results import Result, Status
from tests.services.common import free_port, run_cli
from tests.services.httpserver import Pki, ScriptedServer, SilentServer

PHASES = ("dns_s", "connect_s", "tls_s", "first_byte_s", "transfer_s", "total_s")


def probe(url: str, **fields: Any) -> Result:
    config = HttpCheckConfig.model_validate({"id": "t-http", "url": url, **fields})
    p = HttpProbe(config)
    try:
        return p.execute()
    finally:
        p.close()


# -- status ------------------------------------------------------------------------------

def test_expected_status_is_ok_with_every_phase_timed(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/", 200, "hello"))
    assert r.status is Status.OK
    assert r.message == "200 OK"
    assert r.metrics["status_code"] == 200
    assert r.metrics["body_bytes"] == 5
    assert r.metrics["redirects"] == 0
    assert r.metrics["tls_s"] is None  # plain HTTP has no handshake
    for name in ("dns_s", "connect_s", "first_byte_s", "transfer_s", "total_s"):
        value = r.metrics[name]
        assert value is not None and value >= 0, name
    total = r.metrics["total_s"]
    assert total is not None
    assert sum(r.metrics[n] or 0 for n in PHASES[:-1]) <= total
    assert r.details["peer"] == f"127.0.0.1:{http_server.port}"


def test_unexpected_status_fails_naming_both_codes(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/", 503, "down"))
    assert r.status is Status.FAILING
    assert r.message == "expected status 200, got 503"
    assert r.metrics["status_code"] == 503


def test_any_of_several_expected_statuses_is_ok(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/", 204), expect_status=[200, 204])
    assert r.status is Status.OK
    assert r.message == "204 No Content"


def test_several_expected_statuses_are_listed_when_none_matches(
        http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/", 500), expect_status=[200, 204, 401])
    assert r.message == "expected status 200, 204 or 401, got 500"


def test_method_headers_and_body_are_sent(http_server: ScriptedServer) -> None:
    url = http_server.route("/submit", 201)
    r = probe(url, method="post", headers={"X-Probe": "yes"}, body='{"a": 1}',
              expect_status=[201])
    assert r.status is Status.OK
    seen = http_server.seen[-1]
    assert (seen.method, seen.path, seen.body) == ("POST", "/submit", b'{"a": 1}')
    assert seen.headers["X-Probe"] == "yes"
    assert seen.headers["Host"] == f"127.0.0.1:{http_server.port}"


# -- body ----------------------------------------------------------------------------------

def test_body_containing_the_text_is_ok(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/", 200, "status: ok"), contains="ok")
    assert r.status is Status.OK


def test_body_missing_the_text_fails(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/", 200, "status: degraded"), contains="ok")
    assert r.status is Status.FAILING
    assert r.message == 'body does not contain "ok"'


def test_body_matching_the_regex_is_ok(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/", 200, "version 1.42.0"), regex=r"version \d+\.\d+")
    assert r.status is Status.OK


def test_body_not_matching_the_regex_fails(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/", 200, "version unknown"), regex=r"version \d+")
    assert r.status is Status.FAILING
    assert r.message == r"body does not match /version \d+/"


def test_every_body_mismatch_is_reported(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/", 200, "nothing"), contains="ok", regex="^v")
    assert r.message == 'body does not contain "ok"; body does not match /^v/'


def test_invalid_regex_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="invalid regular expression"):
        HttpCheckConfig.model_validate({"id": "x", "url": "http://a/", "regex": "("})


# -- JSON ------------------------------------------------------------------------------------

HEALTH = {"status": "ok", "checks": [{"name": "db", "up": True}], "version": 3,
          "odd.key": "x"}


def test_json_fields_equal_to_the_expected_values_are_ok(http_server: ScriptedServer) -> None:
    url = http_server.json_route("/health", HEALTH)
    r = probe(url, json={"$.status": "ok", "$.checks[0].up": True, "version": 3,
                         "$['odd.key']": "x"})
    assert r.status is Status.OK
    assert r.details["content_type"] == "application/json"


def test_json_field_with_another_value_fails_naming_both(http_server: ScriptedServer) -> None:
    url = http_server.json_route("/health", {**HEALTH, "status": "degraded"})
    r = probe(url, json={"$.status": "ok"})
    assert r.status is Status.FAILING
    assert r.message == '$.status is "degraded", expected "ok"'


def test_json_true_is_not_one(http_server: ScriptedServer) -> None:
    url = http_server.json_route("/health", HEALTH)
    r = probe(url, json={"$.checks[0].up": 1})
    assert r.message == "$.checks[0].up is true, expected 1"


def test_missing_json_field_fails(http_server: ScriptedServer) -> None:
    url = http_server.json_route("/health", HEALTH)
    r = probe(url, json={"$.checks[5].name": "db"})
    assert r.status is Status.FAILING
    assert r.message == "$.checks[5].name not found in the JSON body"


def test_body_that_is_not_json_fails(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/health", 200, "<html>ok</html>"), json={"$.status": "ok"})
    assert r.status is Status.FAILING
    assert r.message == "body is not JSON (Expecting value: line 1 column 1 (char 0))"


def test_json_path_outside_the_subset_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match=r"no wildcards or filters"):
        HttpCheckConfig.model_validate({"id": "x", "url": "http://a/", "json": {"$.a[*]": 1}})


# -- redirects -----------------------------------------------------------------------------

def test_redirect_chain_is_followed_to_the_final_page(http_server: ScriptedServer) -> None:
    final = http_server.route("/c", 200, "landed")
    http_server.redirect("/b", "/c", 302)
    start = http_server.redirect("/a", http_server.url("/b"), 301)
    r = probe(start, contains="landed")
    assert r.status is Status.OK
    assert r.metrics["redirects"] == 2
    assert r.details["final_url"] == final
    assert [(h["status"], h["to"]) for h in r.details["redirects"]] == [
        (301, http_server.url("/b")), (302, final)]
    assert [s.path for s in http_server.seen] == ["/a", "/b", "/c"]


def test_redirect_not_followed_is_judged_by_its_own_status(
        http_server: ScriptedServer) -> None:
    http_server.route("/new", 200)
    url = http_server.redirect("/old", "/new", 301)
    r = probe(url, follow_redirects=False)
    assert r.status is Status.FAILING
    assert r.message == "expected status 200, got 301"
    assert r.metrics["redirects"] == 0
    assert [s.path for s in http_server.seen] == ["/old"]


def test_redirect_expected_when_not_following_is_ok(http_server: ScriptedServer) -> None:
    url = http_server.redirect("/old", "/new", 301)
    r = probe(url, follow_redirects=False, expect_status=[301])
    assert r.status is Status.OK
    assert r.message == "301 Moved Permanently"


def test_redirect_loop_stops_at_the_limit(http_server: ScriptedServer) -> None:
    http_server.redirect("/loop", "/loop", 302)
    r = probe(http_server.url("/loop"), max_redirects=3)
    assert r.status is Status.FAILING
    assert r.message == f"stopped after 3 redirects at {http_server.url('/loop')}"
    assert len(http_server.seen) == 4


def test_see_other_after_post_turns_into_get(http_server: ScriptedServer) -> None:
    http_server.route("/done", 200)
    url = http_server.redirect("/form", "/done", 303)
    r = probe(url, method="POST", body="x=1")
    assert r.status is Status.OK
    assert [(s.method, s.path, s.body) for s in http_server.seen] == [
        ("POST", "/form", b"x=1"), ("GET", "/done", b"")]


def test_credentials_are_not_forwarded_to_another_origin(
        http_server: ScriptedServer) -> None:
    other = ScriptedServer()
    other.start()
    try:
        other.route("/", 200)
        url = http_server.redirect("/", other.url("/"), 302)
        r = probe(url, headers={"Authorization": "Bearer s3cret", "X-Trace": "1"})
        assert r.status is Status.OK
        assert http_server.seen[0].headers["Authorization"] == "Bearer s3cret"
        assert "Authorization" not in other.seen[0].headers
        assert other.seen[0].headers["X-Trace"] == "1"
        assert "s3cret" not in json.dumps(r.to_json_dict())
    finally:
        other.stop()


# -- timeouts and unreachable servers -------------------------------------------------------

def test_server_slower_than_the_timeout_fails_waiting_for_first_byte(
        http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/slow", 200, "late", delay=30), timeout=1)
    assert r.status is Status.FAILING
    assert r.message == "timed out after 1s waiting for first byte"
    assert r.details["timed_out"] is True
    assert r.metrics["first_byte_s"] is None
    assert r.metrics["connect_s"] is not None
    assert r.duration_s < 30


def test_hanging_server_fails_with_a_timeout(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/hang", hang=True), timeout="1.5s")
    assert r.status is Status.FAILING
    assert r.message == "timed out after 1.5s waiting for first byte"
    assert r.duration_s < 30


def test_body_slower_than_the_timeout_fails_reading_the_body(
        http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/drip", 200, "late body", body_delay=30), timeout=1)
    assert r.status is Status.FAILING
    assert r.message == "timed out after 1s reading the body"
    assert r.metrics["first_byte_s"] is not None
    assert r.duration_s < 30


def test_server_silent_during_the_tls_handshake_fails_with_a_timeout(
        silent_server: SilentServer) -> None:
    r = probe(f"https://127.0.0.1:{silent_server.port}/", timeout=1)
    assert r.status is Status.FAILING
    assert r.message == "timed out after 1s in the TLS handshake"
    assert r.metrics["tls_s"] is not None


def test_closed_port_fails_as_connection_refused() -> None:
    port = free_port()
    r = probe(f"http://127.0.0.1:{port}/")
    assert r.status is Status.FAILING
    assert r.message == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert r.details["phase"] == f"connecting to 127.0.0.1:{port}"


def test_unresolvable_host_fails_naming_the_host() -> None:
    r = probe("http://no-such-host.invalid/", timeout=5)
    assert r.status is Status.FAILING
    assert r.message.startswith("cannot resolve no-such-host.invalid: ")


# -- HTTPS ------------------------------------------------------------------------------------

def test_https_with_the_right_ca_is_ok_and_times_the_handshake(
        https_server: ScriptedServer, test_pki: Pki) -> None:
    r = probe(https_server.route("/", 200, "secure"), ca_file=str(test_pki.ca_file),
              contains="secure")
    assert r.status is Status.OK
    tls_s = r.metrics["tls_s"]
    assert tls_s is not None and tls_s > 0
    assert r.details["tls_version"] in ("TLSv1.2", "TLSv1.3")


def test_https_with_an_untrusted_certificate_fails(https_server: ScriptedServer) -> None:
    r = probe(https_server.route("/", 200))
    assert r.status is Status.FAILING
    assert r.message.startswith("TLS certificate not trusted: ")
    assert r.details["phase"] == "in the TLS handshake"


def test_https_without_verification_accepts_an_untrusted_certificate(
        https_server: ScriptedServer) -> None:
    r = probe(https_server.route("/", 200), verify_tls=False)
    assert r.status is Status.OK


def test_missing_ca_file_is_an_error(https_server: ScriptedServer, tmp_path: Path) -> None:
    r = probe(https_server.route("/", 200), ca_file=str(tmp_path / "nope.pem"))
    assert r.status is Status.ERROR
    assert r.message == f"ca_file {tmp_path / 'nope.pem'} does not exist; give a PEM bundle path"


# -- config ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"url": "ftp://a/"}, "is not an http:// or https:// URL with a host"),
    ({"url": "http://u:p@a/"}, "do not put credentials in the URL"),
    ({"url": "http://a/", "expect_status": [99]}, "99 is not an HTTP status code"),
    ({"url": "http://a/", "method": "GE T"}, "is not an HTTP method"),
    ({"url": "https://a/", "verify_tls": False, "ca_file": "/x"}, "drop one of them"),
])
def test_bad_fields_are_rejected_with_instructions(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HttpCheckConfig.model_validate({"id": "x", **fields})


def test_json_path_field_accepts_both_spellings() -> None:
    a = HttpCheckConfig.model_validate({"id": "x", "url": "http://a/", "json": {"s": 1}})
    b = HttpCheckConfig.model_validate({"id": "x", "url": "http://a/", "json_path": {"s": 1}})
    assert a.json_path == b.json_path == {"s": 1}


# -- CLI ----------------------------------------------------------------------------------

def test_cli_ok_exits_0_and_prints_the_result_json(http_server: ScriptedServer) -> None:
    url = http_server.route("/", 200, "all ok")
    proc = run_cli("probe", "http", url, "--contains", "ok", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"check", "kind", "env", "status", "started_at", "duration_s",
                        "message", "metrics", "details", "steps"}
    assert (doc["check"], doc["kind"], doc["status"], doc["message"]) == (
        "adhoc-http", "http", "ok", "200 OK")
    assert set(PHASES) <= set(doc["metrics"])
    assert doc["started_at"].endswith("Z")


def test_cli_failing_exits_1(http_server: ScriptedServer) -> None:
    url = http_server.route("/", 500)
    proc = run_cli("probe", "http", url, "--expect-status", "200", "--expect-status", "204")
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAILING  adhoc-http  expected status 200 or 204, got 500")


def test_cli_method_and_timeout_flags_apply(http_server: ScriptedServer) -> None:
    url = http_server.route("/slow", 200, delay=30)
    proc = run_cli("probe", "http", url, "--method", "HEAD", "--timeout", "1", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["message"] == "timed out after 1s waiting for first byte"
    assert http_server.seen[0].method == "HEAD"


def test_configured_check_runs_through_check_run(http_server: ScriptedServer,
                                                tmp_path: Path) -> None:
    url = http_server.json_route("/health", {"status": "degraded"})
    (tmp_path / "checks").mkdir()
    (tmp_path / "controlplane.yaml").write_text(
        "environments:\n  dev: {hosts: {voice360: 127.0.0.1}}\n")
    (tmp_path / "checks" / "http.yaml").write_text(
        "checks:\n  - id: http-local\n    kind: http\n    env: dev\n"
        f"    url: {url}\n    json: {{$.status: ok}}\n    timeout: 5s\n")
    proc = run_cli("check", "run", "http-local", "--json", "--config",
                   str(tmp_path / "controlplane.yaml"))
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["check"], doc["env"], doc["status"], doc["message"]) == (
        "http-local", "dev", "failing", '$.status is "degraded", expected "ok"')


def test_cli_bad_url_exits_2_with_the_reason() -> None:
    proc = run_cli("probe", "http", "ftp://example.org/")
    assert proc.returncode == 2
    assert "is not an http:// or https:// URL with a host" in proc.stderr


def test_a_credential_in_the_url_query_never_reaches_the_result(
        http_server: ScriptedServer) -> None:
    http_server.route("/down", 503, "down")
    start = http_server.redirect("/in", http_server.url("/down?sig=redirect-s3cret"), 302)
    r = probe(start + "?token=query-s3cret&page=2")
    assert r.status is Status.FAILING
    text = r.model_dump_json()
    assert "s3cret" not in text
    assert r.details["url"] == start + "?token=***&page=2"
    assert r.details["redirects"][0]["to"] == http_server.url("/down?sig=***")


def test_a_slow_server_shows_in_the_first_byte_phase(http_server: ScriptedServer) -> None:
    r = probe(http_server.route("/slow", 200, "late", delay=0.4, body_delay=0.3))
    m = r.metrics
    assert r.status is Status.OK
    # The server waits 0.4 s before its status line and 0.3 s more before the body: each
    # wait lands in its own phase, never in connecting.
    assert m["first_byte_s"] is not None and m["first_byte_s"] >= 0.4
    assert m["transfer_s"] is not None and m["transfer_s"] >= 0.3
    assert m["connect_s"] is not None and m["connect_s"] < m["first_byte_s"]
