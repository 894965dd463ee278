"""config_drift against the sandbox's bic-agent and against hand-written appconfig files."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from controlplane.probes.config_drift import ConfigDriftConfig, ConfigDriftProbe, platform_domains
from controlplane.results import Result, Status
from controlplane.sandbox.platform import ENVIRONMENTS, env_by_name
from controlplane.sandbox.runner import Sandbox
from tests.services.sandbox import sandbox_context


def drift(sb: Sandbox, env: str = "production", **overrides: Any) -> Result:
    e = env_by_name(env)
    raw: dict[str, Any] = {"id": f"drift-{env}", "kind": "config_drift", "env": env,
                           "url": sb.env_url(e, "frontend", "/assets/appconfig.json"),
                           "ca_file": sb.ca_file, "nameserver": sb.nameserver}
    raw.update(overrides)
    return ConfigDriftProbe(ConfigDriftConfig.model_validate(raw), sandbox_context()).execute()


@pytest.mark.parametrize("env", [e.name for e in ENVIRONMENTS])
def test_each_environment_points_at_itself(sandbox: Sandbox, env: str) -> None:
    result = drift(sandbox, env)
    assert result.status == Status.OK
    assert result.message == f"all 4 URLs in appconfig.json point at {env}"
    assert result.metrics == {"urls": 4, "drifted": 0, "unknown": 0}


def test_production_pointing_at_staging_fails_naming_keys_and_values(sandbox: Sandbox) -> None:
    sandbox.faults.set("appconfig_staging")
    result = drift(sandbox)
    bic, api, voice = (sandbox.port(p) for p in ("bic_agent", "halo_task", "voice360"))
    assert result.status == Status.FAILING
    assert result.message == (
        "production appconfig.json points at staging: "
        f"agentUrl=https://halovoice-staging.techhalo.ai:{bic}, "
        f"apiUrl=https://api-halo-task-staging.techhalo.ai:{api}, "
        f"idCardBaseUrl=https://staging-sky.halo360.ai:{bic}/idcard, "
        f"voiceApiUrl=https://360voice-staging.techhalo.ai:{voice}")
    assert result.metrics == {"urls": 4, "drifted": 4, "unknown": 0}
    assert {r["env"] for r in result.details["urls"]} == {"staging"}


def test_drift_in_production_leaves_staging_ok(sandbox: Sandbox) -> None:
    sandbox.faults.set("appconfig_staging")
    assert drift(sandbox, "staging").status == Status.OK


@pytest.fixture
def appconfig_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A plain HTTP server answering whatever JSON (or bytes) the test puts in ``doc``."""
    doc: dict[str, Any] = {"status": 200, "body": {}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = doc["body"]
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(doc["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/assets/appconfig.json", doc
    server.shutdown()
    server.server_close()


def local(url: str, env: str = "production", **overrides: Any) -> Result:
    raw: dict[str, Any] = {"id": "drift", "kind": "config_drift", "env": env, "url": url}
    raw.update(overrides)
    return ConfigDriftProbe(ConfigDriftConfig.model_validate(raw), sandbox_context()).execute()


def test_nested_keys_and_lists_are_compared(appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"api": {"base": "https://api-halo-task.techhalo.ai/api"},
                   "sockets": ["wss://360voice-dev.techhalo.ai/hub"], "title": "not a url"}
    result = local(url)
    assert result.status == Status.FAILING
    assert result.message == ("production appconfig.json points at dev: "
                              "sockets[0]=wss://360voice-dev.techhalo.ai/hub")


def test_several_other_environments_are_listed_per_environment(
        appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"a": "https://api-halo-task-staging.techhalo.ai", "b": "https://dev-sky.halo360.ai"}
    assert local(url).message == ("production appconfig.json points at staging, dev: "
                                  "staging: a=https://api-halo-task-staging.techhalo.ai; "
                                  "dev: b=https://dev-sky.halo360.ai")


def test_a_host_named_after_another_environment_is_drift(appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"hubUrl": "https://hub-staging.techhalo.ai"}
    assert local(url).message == ("production appconfig.json points at staging: "
                                  "hubUrl=https://hub-staging.techhalo.ai")


def test_unknown_hosts_are_degraded_unless_allowed(appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"apiUrl": "https://api-halo-task.techhalo.ai",
                   "sentry": "https://o1.ingest.sentry.io/42"}
    result = local(url)
    assert result.status == Status.DEGRADED
    assert result.message == ("production appconfig.json has hosts no environment claims (add "
                              "them to allowed_hosts if expected): "
                              "sentry=https://o1.ingest.sentry.io/42")
    assert local(url, allowed_hosts=["*.sentry.io"]).status == Status.OK
    assert local(url, unknown_hosts="failing").status == Status.FAILING
    assert local(url, unknown_hosts="ignore").status == Status.OK


def test_credentials_and_queries_never_reach_the_message(
        appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"apiUrl": "https://user:s3cret@api-halo-task-staging.techhalo.ai/x?key=k3y"}
    result = local(url)
    assert result.message == ("production appconfig.json points at staging: "
                              "apiUrl=https://api-halo-task-staging.techhalo.ai/x")
    assert "s3cret" not in result.model_dump_json() and "k3y" not in result.model_dump_json()


def test_no_urls_is_degraded(appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"production": True}
    result = local(url)
    assert (result.status, result.message) == (Status.DEGRADED,
                                                f"no URLs found in {url}; check path")


def test_invalid_json_is_failing(appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = b"<html>oops"
    result = local(url)
    assert (result.status, result.message) == (Status.FAILING,
                                                f"{url} is not valid JSON (10 bytes)")


def test_missing_appconfig_is_an_error(appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["status"] = 404
    result = local(url)
    assert (result.status, result.message) == (Status.ERROR,
                                                f"{url} answered 404; cannot judge drift")


def test_unreachable_front_end_is_an_error(sandbox: Sandbox) -> None:
    sandbox.faults.set("dns_wrong_ip")
    result = drift(sandbox)
    assert result.status == Status.ERROR
    assert result.message == ("cannot fetch appconfig.json: cannot connect to bic-sky.halo360.ai:"
                              f"{sandbox.port('bic_agent')} (127.0.0.2): connection refused")


def test_a_check_without_environment_is_an_error(appconfig_server: tuple[str, Any]) -> None:
    url, _ = appconfig_server
    result = local(url, env="")
    assert result.status == Status.ERROR
    assert result.message == ("config_drift needs env set to a configured environment (got '';"
                              " known: dev, production, release, staging)")


def test_without_url_the_front_end_host_and_configured_path_are_used(sandbox: Sandbox) -> None:
    # A role whose host carries the sandbox port stands in for the front end on 443.
    context = sandbox_context()
    front = f"bic-sky.halo360.ai:{sandbox.port('bic_agent')}"
    context.environments["production"].hosts["frontend_port"] = front
    raw: dict[str, Any] = {"id": "drift", "kind": "config_drift", "env": "production",
                           "frontend_role": "frontend_port", "ca_file": sandbox.ca_file,
                           "nameserver": sandbox.nameserver}
    result = ConfigDriftProbe(ConfigDriftConfig.model_validate(raw), context).execute()
    assert (result.status, result.details["url"]) == (
        Status.OK, f"https://{front}/assets/appconfig.json")
    raw["path"] = "config/app.json"
    result = ConfigDriftProbe(ConfigDriftConfig.model_validate(raw), context).execute()
    assert (result.status, result.message) == (
        Status.ERROR, f"https://{front}/config/app.json answered 404; cannot judge drift")


def test_allowed_hosts_named_like_an_environment_are_not_drift(
        appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"apiUrl": "https://api-halo-task.techhalo.ai",
                   "pipelines": "https://dev.azure.com/org",
                   "cdn": "https://cdn.release.example.com/assets"}
    result = local(url, allowed_hosts=["dev.azure.com", "*.example.com"])
    assert result.status == Status.OK
    assert result.message == "all 3 URLs in appconfig.json point at production"
    assert result.metrics == {"urls": 3, "drifted": 0, "unknown": 0}
    assert [r["verdict"] for r in result.details["urls"]] == ["ok", "allowed", "allowed"]


def test_foreign_hosts_named_like_an_environment_are_unknown_not_drift(
        appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"apiUrl": "https://api-halo-task.techhalo.ai",
                   "pipelines": "https://dev.azure.com/org",
                   "cdn": "https://cdn.release.example.com/assets"}
    result = local(url)
    assert result.status == Status.DEGRADED
    assert result.message == ("production appconfig.json has hosts no environment claims (add "
                              "them to allowed_hosts if expected): "
                              "pipelines=https://dev.azure.com/org, "
                              "cdn=https://cdn.release.example.com/assets")
    assert result.metrics == {"urls": 3, "drifted": 0, "unknown": 2}
    assert [r["verdict"] for r in result.details["urls"]] == ["ok", "unknown", "unknown"]


def test_hosts_in_the_platforms_own_domains_named_after_another_environment_are_drift(
        appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"hub": "https://hub.dev.techhalo.ai", "cards": "https://cards-release.halo360.ai",
                   "pipelines": "https://dev.azure.com/org"}
    result = local(url, allowed_hosts=["dev.azure.com"])
    assert result.status == Status.FAILING
    assert result.message == ("production appconfig.json points at dev, release: "
                              "dev: hub=https://hub.dev.techhalo.ai; "
                              "release: cards=https://cards-release.halo360.ai")


def test_an_allowed_pattern_never_hides_another_environments_configured_host(
        appconfig_server: tuple[str, Any]) -> None:
    url, doc = appconfig_server
    doc["body"] = {"apiUrl": "https://api-halo-task-staging.techhalo.ai"}
    result = local(url, allowed_hosts=["*.techhalo.ai"])
    assert result.status == Status.FAILING
    assert result.message == ("production appconfig.json points at staging: "
                              "apiUrl=https://api-halo-task-staging.techhalo.ai")


def test_an_allowed_pattern_lets_a_host_in_our_own_domain_through(
        appconfig_server: tuple[str, Any]) -> None:
    # A shared service the operator vouches for, though its name carries "dev".
    url, doc = appconfig_server
    doc["body"] = {"docs": "https://dev-portal.techhalo.ai"}
    assert local(url).status == Status.FAILING
    result = local(url, allowed_hosts=["dev-portal.techhalo.ai"])
    assert (result.status, result.metrics["drifted"]) == (Status.OK, 0)


def test_platform_domains_are_the_configured_hosts_parent_domains() -> None:
    envs = sandbox_context().environments
    assert platform_domains(envs) == {"techhalo.ai", "halo360.ai"}
    envs["production"].hosts["short"] = "Example.COM:8443"
    assert platform_domains(envs) == {"techhalo.ai", "halo360.ai", "example.com"}
